"""The Jetson kit as far as it runs here: shellcheck on jetson/*.sh, `systemd-analyze verify` and
`security` on the unit (exposure <= 4.0), power.sh choosing the top power mode by name and refusing a
clock state that is not root-only, and engine builds keeping systemd waiting (EXTEND_TIMEOUT_USEC).
Nothing here ran on a Jetson: nvpmodel and jetson_clocks are stand-ins that log their arguments."""

import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

JETSON = Path(__file__).resolve().parent.parent / "jetson"
UNIT = JETSON / "edge-fas.service"


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed (Debian: shellcheck)")
def test_shellcheck_passes_on_every_script():
    scripts = sorted(str(p) for p in JETSON.glob("*.sh"))
    assert len(scripts) >= 5
    r = subprocess.run(["shellcheck", *scripts], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


needs_systemd = pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")


@needs_systemd
def test_unit_verifies(tmp_path):
    # ExecStart must exist for verify: point it at this interpreter, everything else as shipped
    unit = tmp_path / "edge-fas.service"
    unit.write_text(UNIT.read_text().replace("/opt/edge-fas/venv/bin/edge-fas", sys.executable))
    r = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "edge-fas.service" not in r.stderr, r.stderr


@needs_systemd
def test_unit_exposure_is_at_most_4():
    r = subprocess.run(["systemd-analyze", "security", "--offline=true", "--no-pager", str(UNIT)],
                       capture_output=True, text=True, timeout=60)
    if "--offline" in r.stderr and r.returncode:
        pytest.skip("this systemd-analyze has no --offline (systemd < 250)")
    m = re.search(r"Overall exposure level for edge-fas.service: (\d+\.\d+)", r.stdout)
    assert m, r.stdout[-2000:] + r.stderr
    assert float(m.group(1)) <= 4.0, r.stdout


def test_unit_keeps_start_timeout_and_hardening():
    text = UNIT.read_text()
    for line in ("Type=notify", "NoNewPrivileges=yes", "ProtectSystem=strict", "DevicePolicy=closed",
                 "DeviceAllow=char-video4linux rw", "DeviceAllow=char-usb_device rw", "User=edge-fas",
                 "CapabilityBoundingSet=", "TimeoutStartSec=300s"):
        assert re.search(rf"^{re.escape(line)}$", text, re.M), line


NVPMODEL_CONF = """< PM_CONFIG DEFAULT=1 >
< POWER_MODEL ID=0 NAME=15W >
< POWER_MODEL ID=1 NAME=25W >
< POWER_MODEL ID=2 NAME=MAXN_SUPER >
< POWER_MODEL ID=3 NAME=7W >
"""


@pytest.fixture
def fake_board(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("power.sh refuses to run without root")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.log"
    for tool in ("nvpmodel", "jetson_clocks"):
        (bin_dir / tool).write_text(f'#!/bin/sh\necho "{tool} $*" >> {log}\n'
                                    '[ "$1" = --store ] && echo "/sys/fake:1" > "$2"\nexit 0\n')
        (bin_dir / tool).chmod(0o755)
    conf = tmp_path / "nvpmodel.conf"
    conf.write_text(NVPMODEL_CONF)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "NVPMODEL_CONF": str(conf),
           "EDGE_FAS_POWER_STATE": str(tmp_path / "state")}
    run = lambda *a: subprocess.run(["bash", str(JETSON / "power.sh"), *a], env=env, capture_output=True,  # noqa: E731
                                    text=True, timeout=30)
    return run, log, tmp_path / "state"


def test_power_max_picks_the_top_mode_by_name_and_keeps_state_root_only(fake_board):
    run, log, state = fake_board
    r = run("max")
    assert r.returncode == 0, r.stderr
    calls = [c.strip() for c in log.read_text().splitlines()]
    assert "nvpmodel -m 2" in calls and "jetson_clocks" in calls  # MAXN_SUPER is mode 2 here, not 0
    assert (state.stat().st_mode & 0o777) == 0o700 and (state / "jetson_clocks.conf").stat().st_uid == 0
    r = run("default")
    assert r.returncode == 0 and f"jetson_clocks --restore {state}/jetson_clocks.conf" in log.read_text()
    assert "nvpmodel -m 1" in log.read_text()


def test_power_default_refuses_a_state_file_others_can_write(fake_board):
    run, log, state = fake_board
    assert run("max").returncode == 0
    (state / "jetson_clocks.conf").chmod(0o666)
    r = run("default")
    assert "not root-only" in r.stderr and "--restore" not in log.read_text()


def test_an_engine_build_keeps_systemd_waiting(tmp_path, monkeypatch):
    """Under systemd, a build sends EXTEND_TIMEOUT_USEC so a long build is not killed and restarted."""
    from test_tensorrt_api import gate_inputs, install, tiny_artifact  # noqa: F401

    import fake_tensorrt as fake
    from edge_fas.export import export_model
    from edge_fas.runtime import load_runtime
    from test_runtime import Tiny
    art = tmp_path / "art"
    export_model(Tiny(), art, parity_count=4, parity_source="random", gate_count=0)
    trt = install(monkeypatch, tmp_path, "10.3.0")
    trt._behave = fake.default_behaviour(trt, fake.io_of(art / "model.onnx"))
    sock_path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(sock_path)
        sock.settimeout(2)
        monkeypatch.setenv("NOTIFY_SOCKET", sock_path)
        load_runtime(art, kind="tensorrt", precision="fp32", quiet=True, warmup=(), gate_inputs=gate_inputs())
        got = sock.recv(256).decode()
    assert got.startswith("EXTEND_TIMEOUT_USEC=") and int(got.split("=")[1]) >= 60_000_000


def test_dockerfile_fails_loudly_and_runs_unprivileged():
    text = "\n".join(ln for ln in (JETSON / "Dockerfile").read_text().splitlines() if not ln.startswith("#"))
    assert "|| true" not in text and "USER edge-fas" in text and 'CMD ["doctor"]' in text
    assert "--privileged" not in text and "--index-url" in text and ".dev/" not in text
    ignore = (JETSON.parent / ".dockerignore").read_text().split()
    assert {".git", ".venv", "*.plan"} <= set(ignore)


def _syscalls(group: str) -> set[str]:
    """The system calls systemd puts in `group` (@name), nested groups expanded."""
    r = subprocess.run(["systemd-analyze", "syscall-filter", group], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    out = set()
    for line in r.stdout.splitlines()[1:]:
        name = line.strip()
        if name.startswith("@"):
            out |= _syscalls(name)
        elif name and not name.startswith("#"):
            out.add(name)
    return out


@needs_systemd
def test_the_unit_lets_the_registration_check_lower_its_own_priority():
    """The running registration check's thread lowers its priority (setpriority) so the decisions get the cores first;
    the unit's syscall filter must allow it, or the service keeps the check at its own priority."""
    filters = re.findall(r"^SystemCallFilter=(.*)$", UNIT.read_text(), re.M)
    allowed = set().union(*(_syscalls(g) for line in filters if not line.startswith("~") for g in line.split()))
    denied = set().union(*(_syscalls(g) for line in filters if line.startswith("~") for g in line[1:].split()))
    assert "setpriority" in allowed and "setpriority" not in denied


def test_the_kiosk_config_keeps_the_registration_state_where_the_unit_may_write():
    import yaml
    state_dir = re.search(r"^StateDirectory=(\S+)$", UNIT.read_text(), re.M).group(1)
    config = yaml.safe_load((JETSON / "config.yaml").read_text())
    assert config["deployment"]["mode"] == "production"
    assert config["calibration"]["monitor_state_file"].startswith(f"/var/lib/{state_dir}/")
