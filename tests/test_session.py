"""Portable session format: round trip, labels, interrupted takes, bad input."""

import os
import re
import subprocess
import sys

import numpy as np
import pytest

from edge_fas.calibration import Extrinsics, Intrinsics, RigCalibration
from edge_fas.drivers.session import SessionReader, SessionWriter, is_session
from edge_fas.errors import RecordingError
from edge_fas.types import DeviceInfo, FrameSet, GroundTruth

W, H = 64, 48


def _cal():
    i = Intrinsics(W, H, 60.0, 60.0, W / 2, H / 2)
    return RigCalibration(color=i, depth=i, ir=i, depth_to_color=Extrinsics(np.eye(3), [0.02, 0, 0]), source="test")


def _frame(n, rng, ir16=False):
    return FrameSet(rgb=rng.integers(0, 256, (H, W, 3), dtype=np.uint8),
                    depth=rng.integers(0, 65535, (H, W), dtype=np.uint16),
                    ir=rng.integers(0, 65535 if ir16 else 255, (H, W)).astype(np.uint16 if ir16 else np.uint8),
                    depth_scale=0.000125, timestamps={"rgb": 33.3 * n + 0.4, "depth": 33.3 * n, "ir": 33.3 * n},
                    counters={"rgb": n, "depth": n, "ir": n},
                    truth=GroundTruth(1, "print", "cefa", face_box=(1, 2, 30, 40), distance_m=0.6),
                    meta={"emitter_on": bool(n % 2), "gain": np.float32(2.5)})


def test_round_trip_is_lossless_with_labels_and_metadata(tmp_path):
    rng = np.random.default_rng(1)
    written = []
    dev = DeviceInfo("D435", "123", "5.16", "realsense")
    with SessionWriter(tmp_path / "s", device=dev, calibration=_cal(), site="lab", domain="lobby",
                       retention_days=30) as w:
        w.begin_take(species="bona_fide", subject_id="S001", consent=True, notes="glasses")
        for n in range(3):
            written.append(_frame(n, rng))
            w.write(written[-1])
        w.begin_take(species="print", subject_id="S001", consent=True)  # ends the first take
        written.append(_frame(3, rng, ir16=True))
        w.write(written[-1])
    assert is_session(tmp_path / "s")
    r = SessionReader(tmp_path / "s")
    assert [(t.species, t.label, t.frames, t.complete) for t in r.takes] == [
        ("bona_fide", 0, 3, True), ("print", 1, 1, True)]
    assert r.metadata["site"] == "lab" and r.metadata["retention_days"] == 30 and r.device == dev
    assert r.calibration.depth_to_color.t[0] == pytest.approx(0.02) and len(r) == 4
    got = list(r)
    for a, b in zip(written, got):
        for m in ("rgb", "depth", "ir"):
            np.testing.assert_array_equal(getattr(a, m), getattr(b, m))
            assert getattr(a, m).dtype == getattr(b, m).dtype
        assert b.timestamps == a.timestamps and b.counters == a.counters and b.depth_scale == a.depth_scale
        assert b.meta["emitter_on"] == a.meta["emitter_on"] and b.meta["gain"] == 2.5
    # the take's label is the truth; the frame's box and distance come along
    assert got[0].truth.label == 0 and got[0].truth.species == "bona_fide" and got[0].truth.domain == "lobby"
    assert got[3].truth.label == 1 and got[3].truth.face_box == (1, 2, 30, 40)
    assert got[0].truth.extra["subject_id"] == "S001" and got[3].truth.extra["take"] == "0002"
    assert [f.counter for f in r.frames(take="0002")] == [3]
    assert r.index() == [("0001", 0), ("0001", 1), ("0001", 2), ("0002", 0)]
    np.testing.assert_array_equal(r.load("0001", 2).depth, written[2].depth)
    assert r.load("0002", 0).truth.species == "print"
    with pytest.raises(RecordingError, match="no frame 5"):
        r.load("0001", 5)


def test_jpeg_colour_is_close(tmp_path):
    rng = np.random.default_rng(2)
    f = _frame(0, rng).replace(rgb=np.full((H, W, 3), (200, 100, 50), np.uint8))
    with SessionWriter(tmp_path / "s", color_codec="jpeg") as w:
        w.begin_take(label=1, consent=True)
        w.write(f)
    (g,) = SessionReader(tmp_path / "s")
    assert np.abs(g.rgb.astype(int) - f.rgb).max() <= 3 and g.truth.species == "attack"


_CRASH = """
import os, sys, numpy as np
from edge_fas.drivers.session import SessionWriter
from edge_fas.types import FrameSet
w = SessionWriter(sys.argv[1], require_consent=False)
w.begin_take(species="replay")
for n in range(3):
    w.write(FrameSet(rgb=np.zeros((8, 8, 3), np.uint8), depth=np.full((8, 8), n, np.uint16), counters={"depth": n}))
w._lines.write('{"index": 3, "files": {"dep')  # half a line, as if killed mid-write
w._lines.flush()
os._exit(9)
"""


def test_killed_mid_take_reads_up_to_last_whole_frame(tmp_path):
    p = subprocess.run([sys.executable, "-c", _CRASH, str(tmp_path / "s")], env=dict(os.environ), timeout=60)
    assert p.returncode == 9
    r = SessionReader(tmp_path / "s")
    (take,) = r.takes
    assert take.complete is False and take.frames == 3
    assert [int(f.depth[0, 0]) for f in r] == [0, 1, 2]


def test_append_numbers_new_takes_after_the_existing_ones_and_takes_over_a_dead_writers_lock(tmp_path):
    """A session whose writer was killed mid-take: appending keeps that take as it is (3 whole frames, not
    complete) and adds the next one after it; the killed writer's lock does not stop it."""
    path = tmp_path / "s"
    p = subprocess.run([sys.executable, "-c", _CRASH, str(path)], env=dict(os.environ), timeout=60)
    assert p.returncode == 9 and (path / ".writer.lock").exists()
    with SessionWriter(path, require_consent=False, append=True) as w:
        assert (path / ".writer.lock").exists()
        w.begin_take(species="print")
        w.write(FrameSet(rgb=np.zeros((8, 8, 3), np.uint8), depth=np.full((8, 8), 7, np.uint16)))
    assert not (path / ".writer.lock").exists()
    r = SessionReader(path)
    assert [(t.id, t.species, t.frames, t.complete) for t in r.takes] == [
        ("0001", "replay", 3, False), ("0002", "print", 1, True)]
    assert [int(f.depth[0, 0]) for f in r] == [0, 1, 2, 7]
    assert len(r.metadata["reopened"]) == 1 and "closed" in r.metadata
    with SessionWriter(tmp_path / "new", require_consent=False, append=True) as w:  # nothing there yet: created
        w.begin_take(species="print")
    assert [t.id for t in SessionReader(tmp_path / "new").takes] == ["0001"]


def test_append_refuses_another_camera_calibration_or_label_and_changes_nothing(tmp_path):
    path = _session(tmp_path / "s")
    (path / "session.yaml").write_text((path / "session.yaml").read_text().replace("site: ''", "site: lab"))
    before = (path / "session.yaml").read_bytes()
    dev = DeviceInfo("D435", "123", "5.16", "realsense")
    other = _cal()
    other = RigCalibration(color=other.color, depth=other.depth, ir=other.ir,
                           depth_to_color=Extrinsics(np.eye(3), [0.03, 0, 0]), source="test")
    cases = [({"device": DeviceInfo("D435", "999", "5.16", "realsense")}, "serial 999"),
             ({"calibration": other}, "calibration differs.*calibrate --apply .* --calibration-file FILE"),
             ({"calibration": None}, "calibration differs"),
             ({"site": "lobby"}, "its site is 'lab', not 'lobby'"),
             ({"color_codec": "jpeg"}, "color_codec is 'png', not 'jpeg'")]
    for change, message in cases:
        kwargs = {"device": dev, "calibration": _cal(), **change}
        with pytest.raises(RecordingError, match=message):
            SessionWriter(path, append=True, **kwargs)
        assert (path / "session.yaml").read_bytes() == before and not (path / ".writer.lock").exists()
    with SessionWriter(path, device=dev, calibration=_cal(), site="lab", append=True) as w:  # the same: accepted
        w.begin_take(species="print", consent=True)
    assert [t.id for t in SessionReader(path).takes] == ["0001", "0002"]
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("not a session")
    with pytest.raises(RecordingError, match="holds no edge-fas session"):
        SessionWriter(tmp_path / "other", append=True)


def test_one_writer_at_a_time(tmp_path):
    """Two writers would number their takes alike and write session.yaml over each other; recalibrating while
    a writer records would be undone at its next take."""
    from edge_fas.drivers.session import recalibrate

    path = tmp_path / "s"
    first = SessionWriter(path, device=DeviceInfo("D435", "123", "5.16", "realsense"), calibration=_cal())
    with pytest.raises(RecordingError, match="being written by another process.*writer.lock"):
        SessionWriter(path, device=first.device, calibration=_cal(), append=True)
    with pytest.raises(RecordingError, match="being written by another process"):
        recalibrate(path, _cal(), "rig.yaml")
    first.close()
    with SessionWriter(path, device=first.device, calibration=_cal(), append=True) as second:
        second.begin_take(species="print", consent=True)
    assert [t.id for t in SessionReader(path).takes] == ["0001"]


def test_bad_input_is_refused_with_the_fix(tmp_path):
    with pytest.raises(RecordingError, match="no session.yaml"):
        SessionReader(tmp_path / "nothing")
    w = SessionWriter(tmp_path / "s")
    with pytest.raises(RecordingError, match="no take is open"):
        w.write(FrameSet())
    for species in ("bona_fide", "print"):  # a real source: every take shows a person
        with pytest.raises(RecordingError, match="consent"):
            w.begin_take(species=species, subject_id="S1")
    for subject in ("jane.doe@example.com", "John.Smith"):
        with pytest.raises(RecordingError, match="pseudonymous"):
            w.begin_take(species="print", subject_id=subject, consent=True)
    with pytest.raises(RecordingError, match="contradicts"):
        w.begin_take(species="print", label=0, consent=True)
    with pytest.raises(RecordingError, match="did you mean 'bona_fide'"):
        w.begin_take(species="bonafide", consent=True)
    w.begin_take(species="print", consent=True)
    with pytest.raises(RecordingError, match="uint8 or uint16"):
        w.write(FrameSet(depth=np.zeros((4, 4), np.float32)))
    w.close()
    with pytest.raises(RecordingError, match="not empty.*--append"):
        SessionWriter(tmp_path / "s")
    (tmp_path / "s" / "takes" / "0001" / "rgb").mkdir(exist_ok=True)
    with open(tmp_path / "s" / "takes" / "0001" / "frames.jsonl", "w") as f:
        f.write('{"index": 0, "files": {"rgb": "rgb/000000.png"}}\n')
    with pytest.raises(RecordingError, match="missing or unreadable"):
        list(SessionReader(tmp_path / "s"))


def _session(path, registered=False, serial="123"):
    rng = np.random.default_rng(2)
    with SessionWriter(path, device=DeviceInfo("D435", serial, "5.16", "realsense"), calibration=_cal()) as w:
        w.begin_take(species="bona_fide", subject_id="S001", consent=True)
        for n in range(2):
            w.write(_frame(n, rng).replace(registered=registered))
    return path


def test_a_later_calibration_goes_into_a_recorded_session_and_the_old_one_is_kept(tmp_path, capsys):
    """`edge-fas calibrate --apply`: a rig calibrated after a day of collection re-registers that day's raw
    frames; session.yaml keeps what it replaced, a second apply changes nothing, and the crop cache's key
    for the session's frames changes with it (a crop cut with the old registration is never reused)."""
    import dataclasses

    from edge_fas.cli import main
    from edge_fas.data.sessions import SessionSample

    s = _session(tmp_path / "s")
    sample = SessionSample(str(s), "0001", 0, 0, "bona_fide", "site", "s/0001/0")
    key_before = sample.identity()
    old = SessionReader(s).calibration
    new = dataclasses.replace(old, source="checkerboard", depth_to_color=Extrinsics(np.eye(3), [0.031, 0, 0]),
                              depth_scale=0.001, camera_model="D435", camera_serial="123")
    new.save(tmp_path / "rig.yaml")
    apply = ["calibrate", "--apply", str(s), "--calibration-file", str(tmp_path / "rig.yaml")]
    assert main(apply) == 0
    r = SessionReader(s)
    assert r.calibration.depth_to_color.t[0] == pytest.approx(0.031) and r.calibration.source == "checkerboard"
    assert r.calibration.depth_scale == old.depth_scale  # the recorded depth unit stays
    assert next(iter(r)).calibration.depth_to_color.t[0] == pytest.approx(0.031)  # what replay and training read
    history = r.metadata["calibration_history"]
    assert len(history) == 1 and history[0]["calibration"] == old.to_dict()
    assert history[0]["by"] == str(tmp_path / "rig.yaml") and history[0]["replaced"]
    assert sample.identity() != key_before
    assert main(apply) == 0 and len(SessionReader(s).metadata["calibration_history"]) == 1
    assert "already carries" in capsys.readouterr().out
    main(["inspect", str(s)])
    assert re.search(r"calibration recorded \(checkerboard\); applied \S+ from \S*rig.yaml", capsys.readouterr().out)


@pytest.mark.parametrize("case", ["other_camera", "registered", "no_file"])
def test_a_calibration_that_cannot_apply_to_a_session_changes_nothing(tmp_path, case, capsys):
    """In a batch, a refused session is named and left byte for byte as it was; the others take the file."""
    from edge_fas.cli import main

    s = _session(tmp_path / "s", registered=case == "registered")
    good = _session(tmp_path / "good", serial="456")
    cal = _cal()
    cal.depth_to_color = Extrinsics(np.eye(3), [0.031, 0, 0])  # measured later: not what the sessions carry
    if case == "other_camera":
        cal.camera_serial = "456"
    cal.save(tmp_path / "rig.yaml")
    before = (s / "session.yaml").read_bytes()
    args = ["calibrate", "--apply", str(s), str(good)]
    args += [] if case == "no_file" else ["--calibration-file", str(tmp_path / "rig.yaml")]
    assert main(args) == 2
    assert (s / "session.yaml").read_bytes() == before
    assert ("calibration_history" in SessionReader(good).metadata) == (case != "no_file")
    expected = {"other_camera": "1 of 2 sessions refused.*belongs to another camera.*serial 456.*serial is 123",
                "registered": "1 of 2 sessions refused.*take.*0001.*registered to colour itself",
                "no_file": "--calibration-file"}[case]
    assert re.search(expected, capsys.readouterr().err.replace("\n", " "))
