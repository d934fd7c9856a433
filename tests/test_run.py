"""`edge-fas run` end to end: real synthetic camera, BlazeFace, registration, crop, a tiny exported model
through ONNX Runtime, the decision policy, the headless sink; then the same on a recording of it."""

import json
from types import SimpleNamespace

import pytest

from edge_fas.cli import main
from toy_model import export_tiny  # noqa: E402



@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_art")
    export_tiny(folder)
    return folder


SMALL = ["--camera-width", "320", "--camera-height", "240"]


@pytest.fixture
def edge_fas(capsys):
    """Run `edge-fas run ARGS` in this process (imports and runtime start-up paid once per session)."""
    def call(*args):
        rc = main(["run", *args])
        out, err = capsys.readouterr()
        return SimpleNamespace(returncode=rc, stdout=out, stderr=err)
    return call


def lines(stdout):
    return [json.loads(x) for x in stdout.splitlines() if x.startswith("{")]


def test_headless_synthetic_then_replay_of_its_recording(artifact, tmp_path, edge_fas):
    session = tmp_path / "session"
    p = edge_fas("--camera", "synthetic", "--model", str(artifact), "--headless", "--max-frames", "24",
                 "--record", str(session), *SMALL)
    assert p.returncode == 0, p.stderr[-2000:]
    out = lines(p.stdout)
    verdicts, summary = out[:-1], out[-1]
    assert summary["summary"] is True and summary["frames"] == 24
    assert summary["verdicts"] == len(verdicts) >= 1
    assert summary["latency_ms"]["p95"] > 0 and "truth" in summary
    # the running registration check's state: 24 frames of one face are too few faces to judge the registration
    assert summary["registration"]["faces"] <= 1 and summary["registration"]["drift_px"] is None
    assert summary["registration"]["faces_seen"] <= 1 and not summary["registration"]["blind"]
    assert "registration check: " in p.stderr and "faces read, not judged" in p.stderr  # the readable summary too
    for v in verdicts:
        assert v["verdict"] in ("live", "attack", "unknown")
        assert v["threshold"] == 0.5
        assert {"frame", "reasons", "latency_ms", "camera_status"} <= set(v)
    judged = [v for v in verdicts if v["score"] is not None]
    assert judged, "no frame reached the model: " + str(summary["reasons"])
    assert {"registration", "detection", "crop", "inference", "decision", "total"} <= set(judged[0]["latency_ms"])
    assert judged[0]["truth"]["species"] and "box" in judged[0]
    assert "recorded" in p.stderr
    recorded = [json.loads(x) for f in sorted(session.glob("takes/*/frames.jsonl")) for x in f.read_text().splitlines()]
    assert recorded and all("host_time" not in r["meta"] and r.get("truth") for r in recorded)

    # the recording plays back through the same pipeline, with its labels
    p2 = edge_fas("--camera", f"replay:{session}", "--model", str(artifact), "--headless")
    assert p2.returncode == 0, p2.stderr[-2000:]
    out2 = lines(p2.stdout)
    assert out2[-1]["summary"] is True and out2[-1]["verdicts"] >= 1
    assert any(v.get("truth") for v in out2[:-1])


def test_bad_arguments_are_refused_clearly(artifact, edge_fas):
    p = edge_fas("--camera", "synthetic", "--model", str(artifact), "--headless", "--max-frames", "0")
    assert p.returncode != 0 and "--max-frames" in p.stderr
    p = edge_fas("--camera", "synthetic", "--model", str(artifact / "nope"), "--headless")
    assert p.returncode != 0 and "nope" in p.stderr


def test_gui_launch_takes_a_screenshot(artifact, tmp_path, edge_fas, monkeypatch):
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    png = tmp_path / "shot.png"
    p = edge_fas("--camera", "synthetic", "--model", str(artifact), "--screenshot", str(png),
                 "--screenshot-after", "5", *SMALL)
    assert p.returncode == 0, p.stderr[-2000:]
    assert png.is_file() and png.stat().st_size > 1000
    assert '"summary":true' in p.stderr  # the GUI run still reports its summary (on stderr)


def test_record_refuses_unlabelled_streams_after_the_summary(artifact, tmp_path, edge_fas, monkeypatch):
    from edge_fas.drivers import synthetic

    real = synthetic.SyntheticCamera.frames

    def unlabelled(self):  # a camera that, like real hardware, does not know what it sees
        for f in real(self):
            f.truth = None
            yield f

    monkeypatch.setattr(synthetic.SyntheticCamera, "frames", unlabelled)
    p = edge_fas("--camera", "synthetic", "--model", str(artifact), "--headless", "--quiet", "--max-frames", "3",
                 "--record", str(tmp_path / "s"), *SMALL)
    assert p.returncode == 2 and "edge-fas collect" in p.stderr
    assert lines(p.stdout)[-1]["summary"] is True
