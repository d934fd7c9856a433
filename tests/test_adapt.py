"""`edge-fas adapt`: sessions in, a fine-tuned, calibrated artifact with its operating point and an ISO
report out; the bundled demo re-calibrated on site sessions; split mistakes refused with the fix."""

import argparse
import json

import pytest

from edge_fas.cli import main as cli_main
from edge_fas.commands.adapt import _check_settings, _check_subjects, _split_sessions, add_arguments, run
from edge_fas.errors import ConfigError

SPECIES = ["bona_fide", "print", "bona_fide", "replay", "bona_fide", "flexible_mask"]


@pytest.fixture(scope="module")
def sessions(tmp_path_factory):
    """Four synthetic-rig sessions with distinct subjects, as `edge-fas collect` would write them."""
    from edge_fas.drivers.session import SessionWriter
    from edge_fas.sim import Rig

    root = tmp_path_factory.mktemp("site")
    rig = Rig("cefa", seed=4, width=160, height=120)
    paths = []
    for s in range(4):
        path = root / f"lobby-day{s}"
        with SessionWriter(path, device=rig.device, calibration=rig.calibration, site="lobby", domain="lobby") as w:
            for k, species in enumerate(SPECIES):
                w.begin_take(species=species, subject_id=f"D{s}S{k}", consent=True)
                for t in (0.0, 0.7):
                    w.write(rig.render(species, 20 * s + k, t))
                w.end_take()
        paths.append(str(path))
    return paths


def test_adapt_fine_tunes_calibrates_exports_and_reports(sessions, tmp_path, capsys):
    from edge_fas.artifact import load_artifact
    from edge_fas.models import build, save_checkpoint

    base = save_checkpoint(tmp_path / "base.pt", build("mmfas", "edge", input_size=32, patch_size=8, width=24,
                                                         heads=2, enc_depth=1, fusion_depth=1, head_width=24))
    out, work = tmp_path / "site-model", tmp_path / "work"
    assert cli_main(["adapt", "--sessions", *sessions, "--base", str(base), "--target", "eer", "--out", str(out),
                     "--epochs", "1", "--batch-size", "4", "--frames-per-take", "2", "--threads", "1",
                     "--parity", "4", "--work", str(work)]) == 0
    art = load_artifact(out)
    op = art.operating_point
    assert op["target"] == "eer" and art.threshold == op["threshold"]
    assert art.calibration.method in ("temperature", "platt", "isotonic")
    assert "recorded sessions" in op["split"] and "test" in op["evidence"]
    doc = json.loads((work / "report" / "metrics.json").read_text())
    assert doc["operating_point"]["threshold"] == pytest.approx(art.threshold)
    assert set(doc["meta"]["sessions"]) == {"train", "val", "test"}
    assert "95% interval" in (work / "report" / "metrics.md").read_text()
    assert "| BPCER |" in capsys.readouterr().out


def test_adapt_recalibrates_the_demo_without_its_checkpoint(sessions, tmp_path):
    from edge_fas.artifact import load_artifact

    out = tmp_path / "demo-site"
    assert cli_main(["adapt", "--sessions", *sessions[:3], "--base", "demo", "--epochs", "0", "--target",
                     "bpcer=0.2", "--out", str(out), "--frames-per-take", "2", "--work", str(tmp_path / "w")]) == 0
    art, demo = load_artifact(out), load_artifact("demo")
    assert art.onnx_sha256 == demo.onnx_sha256 and "int8" not in art.manifest  # network unchanged, int8 left out
    assert art.operating_point["target"] == "bpcer=0.2" and "recorded sessions" in art.calibration.split
    assert art.manifest["training"]["site_calibration"]["note"].startswith("network unchanged")
    p = argparse.ArgumentParser()
    add_arguments(p)
    with pytest.raises(ConfigError, match="no PyTorch checkpoint"):  # the demo cannot be fine-tuned: the fix is named
        run(p.parse_args(["--sessions", *sessions[:3], "--base", "demo", "--out", str(tmp_path / "x")]))


def test_split_mistakes_are_refused_with_the_fix(sessions, tmp_path):
    p = argparse.ArgumentParser()
    add_arguments(p)
    args = p.parse_args(["--sessions", *sessions, "--out", str(tmp_path / "o")])
    split = _split_sessions(args)
    assert sorted(sum(split.values(), [])) == sorted(sessions) and all(split.values())
    assert _split_sessions(args) == split  # deterministic
    with pytest.raises(ConfigError, match="cannot be split"):
        _split_sessions(p.parse_args(["--sessions", *sessions[:2], "--out", "o"]))
    with pytest.raises(ConfigError, match="shares subjects.*--allow-shared-subjects"):
        _check_subjects({"train": [sessions[0]], "val": [sessions[1]], "test": [sessions[0]]}, allow=False)
    assert _check_subjects({"train": [sessions[0]], "val": [sessions[1]], "test": [sessions[0]]}, allow=True)
    with pytest.raises(ConfigError, match="not a session folder"):
        _split_sessions(p.parse_args(["--sessions", str(tmp_path), "--out", "o"]))


def test_sessions_whose_laser_setting_tells_the_label_are_refused(sessions, tmp_path):
    """Bona fide recorded with the emitter on, attacks with it off: the fine-tune could learn the emitter."""
    from edge_fas.drivers.session import SessionWriter
    from edge_fas.sim import Rig

    rig = Rig("cefa", seed=4, width=160, height=120)
    path = tmp_path / "lobby-emitter"
    with SessionWriter(path, device=rig.device, calibration=rig.calibration, site="lobby") as w:
        for k, (species, laser) in enumerate([("bona_fide", 150), ("print", 0)]):
            w.begin_take(species=species, subject_id=f"E{k}", consent=True)
            f = rig.render(species, k, 0.0)
            f.meta["sensor"] = {"depth": {"laser_power": laser, "auto_exposure": 1}}
            w.write(f)
            w.end_take()
    split = {"train": [str(path)], "val": [sessions[1]], "test": [sessions[2]]}
    with pytest.raises(ConfigError, match="depth laser_power separates the labels.*--allow-setting-confounds"):
        _check_settings(split, allow=False)
    assert "bona fide takes 150, attack takes 0" in _check_settings(split, allow=True)[0]
    assert _check_settings({"train": [sessions[0]], "val": [sessions[1]], "test": [sessions[2]]}, allow=False) == []
