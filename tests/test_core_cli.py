import json
import subprocess
import sys

import pytest

from edge_fas import __version__
from edge_fas.cli import SUBCOMMANDS, main


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.strip() == f"edge-fas {__version__}"


def test_help_lists_every_subcommand_of_the_design(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for name in ["run", "record", "collect", "calibrate", "train", "eval", "export", "bench", "doctor"]:
        assert name in SUBCOMMANDS and f"    {name}" in out


def test_console_script_and_doctor_json():
    """The installed `edge-fas` entry point runs doctor and reports the core as usable."""
    exe = [sys.executable, "-m", "edge_fas.cli"]
    proc = subprocess.run([*exe, "doctor", "--json"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    checks = {c["name"]: c for c in report["checks"]}
    assert report["core_ok"] is True
    for name in ["torch", "onnxruntime", "mediapipe", "face-model", "cuda", "tensorrt", "realsense", "openni2",
                 "orbbec-sdk", "gui"]:
        assert name in checks, name
        assert checks[name]["detail"], f"{name} has no reason"
    assert checks["face-model"]["ok"] and "verified" in checks["face-model"]["detail"]
    assert "CPUExecutionProvider" in checks["onnxruntime"]["info"]["providers"]


def test_user_errors_print_without_traceback(tmp_path, capsys):
    from edge_fas.commands import doctor  # noqa: F401 - imported to show the CLI loads its modules

    bad = tmp_path / "bad.yaml"
    bad.write_text("decision: {windw: 1}\n")
    from edge_fas.config import add_config_arguments, config_from_args
    import argparse
    p = argparse.ArgumentParser()
    add_config_arguments(p)
    args = p.parse_args(["--config", str(bad)])
    with pytest.raises(Exception) as e:
        config_from_args(args)
    assert "decision.windw" in str(e.value)


def test_doctor_says_how_int8_runs_on_this_cpu(tmp_path):
    from edge_fas.doctor import cpu_int8_kernels
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse4_1 avx2 fma\n")
    assert "no VNNI" in cpu_int8_kernels(cpuinfo)  # AMD before Zen 4, Intel desktop parts before Ice Lake
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse4_1 avx2 avx512f avx512_vnni\n")
    assert cpu_int8_kernels(cpuinfo).startswith("VNNI")
    cpuinfo.write_text("processor\t: 0\nFeatures\t: fp asimd asimddp\n")  # a Jetson's cores: not x86
    assert cpu_int8_kernels(cpuinfo) == "" and cpu_int8_kernels(tmp_path / "none") == ""
