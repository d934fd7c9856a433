"""`edge-fas record` end to end on the synthetic camera: session and native, then replay."""

import pytest

from edge_fas.cli import main
from edge_fas.drivers import open_camera


def test_record_session_then_replay(tmp_path, capsys):
    out = tmp_path / "rec"
    assert main(["record", "--camera", "synthetic", "--out", str(out), "--frames", "4",
                 "--camera-width", "160", "--camera-height", "120", "--site", "lab"]) == 0
    assert "recorded 4 frame sets" in capsys.readouterr().out
    with open_camera(f"replay:{out}") as cam:
        frames = list(cam.frames())
        assert cam.reader.metadata["site"] == "lab"
    assert len(frames) == 4 and frames[0].depth.shape == (120, 160) and frames[0].truth is not None
    assert frames[0].truth.species == cam.reader.takes[0].species


def test_record_appends_takes_to_a_session_of_the_same_camera(tmp_path, capsys):
    out = tmp_path / "rec"
    small = ["--camera-width", "160", "--camera-height", "120"]
    for _ in range(2):
        assert main(["record", "--camera", "synthetic", "--out", str(out), "--frames", "2", "--append", *small]) == 0
    with open_camera(f"replay:{out}") as cam:
        assert len(list(cam.frames())) == 4 and len(cam.reader.takes) == 2
    assert main(["record", "--camera", "synthetic:seed=5", "--out", str(out), "--frames", "2", "--append",
                 *small]) == 2  # another rig: another calibration
    assert "calibration differs" in capsys.readouterr().err
    assert main(["record", "--camera", "synthetic", "--out", str(tmp_path / "r.db3"), "--format", "native",
                 "--frames", "1", "--append"]) == 2
    assert "--append adds takes to a session folder" in capsys.readouterr().err


def test_record_native_db3(tmp_path):
    pytest.importorskip("pyrealsense2")
    out = tmp_path / "rec.db3"
    assert main(["record", "--camera", "synthetic", "--out", str(out), "--format", "native", "--frames", "3",
                 "--camera-width", "160", "--camera-height", "120"]) == 0
    with open_camera(f"replay:{out}") as cam:
        assert len(list(cam.frames())) == 3


def test_record_needs_a_stop_and_a_label(tmp_path, capsys):
    assert main(["record", "--camera", "synthetic", "--out", str(tmp_path / "x")]) != 0
    assert "--frames" in capsys.readouterr().err
    assert main(["record", "--camera", "synthetic", "--out", str(tmp_path / "y.bin"), "--format", "native",
                 "--frames", "1"]) != 0
    assert ".db3" in capsys.readouterr().err


def test_killed_recording_replays_up_to_last_whole_frame(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    from edge_fas.drivers.session import SessionReader
    out = tmp_path / "killed"
    code = ("import sys; from edge_fas.cli import main; sys.exit(main(['record', '--camera', 'synthetic', '--out', "
            f"{str(out)!r}, '--seconds', '60', '--camera-width', '160', '--camera-height', '120']))")
    proc = subprocess.Popen([sys.executable, "-c", code], env=dict(os.environ))
    lines = out / "takes" / "0001" / "frames.jsonl"
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline and not (lines.is_file() and lines.read_text().count("\n") >= 3):
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    r = SessionReader(out)
    assert r.takes[0].complete is False and len(r) >= 3
    frames = list(r)
    assert len(frames) == len(r) and all(f.depth.shape == (120, 160) for f in frames)
