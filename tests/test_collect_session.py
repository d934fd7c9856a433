"""`edge-fas collect --no-gui` end to end: synthetic camera -> helper C's session format -> read back."""

import datetime as dt
import json

import numpy as np
import pytest

from edge_fas.cli import main

pytest.importorskip("edge_fas.drivers.session", reason="helper C's session format has not landed")

ARGS = ["collect", "--no-gui", "--camera", "synthetic", "--camera-width", "320", "--camera-height", "240",
        "--site", "lab1", "--domain", "surf", "--retention-days", "30", "--frames", "6"]


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    out = tmp_path_factory.mktemp("collect") / "site1"
    rc = main(ARGS + ["--out", str(out), "--subject", "S-042", "--species", "bona_fide", "--consent",
                      "--notes", "first visit", "--operator", "op7"])
    assert rc == 0
    return out


def test_collected_session_reads_back_with_labels_and_retention(session, capsys):
    from edge_fas.drivers.session import SessionReader
    r = SessionReader(session)
    assert r.metadata["site"] == "lab1" and r.metadata["domain"] == "surf" and r.metadata["operator"] == "op7"
    created = dt.date.fromisoformat(r.metadata["created"][:10])
    assert dt.date.fromisoformat(r.metadata["delete_after"]) == created + dt.timedelta(days=30)
    assert r.metadata["retention_days"] == 30
    (take,) = r.takes
    assert (take.species, take.label, take.subject_id, take.consent, take.notes) == \
        ("bona_fide", 0, "S-042", True, "first visit")
    frames = list(r)
    assert len(frames) == 6
    counters = [f.counters["rgb"] for f in frames]
    assert np.all(np.diff(counters) == 1), "consecutive camera frames: nothing lost"
    assert all(f.present() == {"rgb": True, "depth": True, "ir": True} for f in frames)
    assert frames[0].truth.label == 0 and frames[0].truth.species == "bona_fide"
    assert frames[0].rgb.shape == (240, 320, 3) and frames[0].depth.dtype == np.uint16


def test_take_without_consent_from_a_real_source_is_refused_before_anything_is_written(session, tmp_path, capsys):
    """Any source but the synthetic rig shows a person, in attack takes too: consent for every take."""
    replay = [a if a != "synthetic" else f"replay:{session}" for a in ARGS]
    for species in ("bona_fide", "print"):
        out = tmp_path / f"nope-{species}"
        assert main(replay + ["--out", str(out), "--species", species, "--no-face-check"]) == 2
        assert "consent" in capsys.readouterr().err
        assert not out.exists()


def test_attack_take_with_generated_pseudonym(tmp_path, capsys):
    out = tmp_path / "att"
    assert main(ARGS + ["--out", str(out), "--species", "replay", "--frames", "3", "--no-face-check"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["frames"] == 3 and summary["species"] == "replay" and summary["subject_id"].startswith("S-")
    from edge_fas.drivers.session import SessionReader
    r = SessionReader(out)
    assert r.takes[0].label == 1 and len(r) == 3


def test_takes_appended_from_the_command_line_share_one_session(tmp_path, capsys):
    """A site's script: one command per take into one session folder, each take with its own label."""
    out = tmp_path / "day1"
    for species, take in (("bona_fide", "0001"), ("print", "0002"), ("replay", "0003")):
        assert main(ARGS + ["--out", str(out), "--append", "--species", species, "--frames", "2",
                            "--no-face-check"]) == 0
        assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["take"] == take
    from edge_fas.drivers.session import SessionReader
    r = SessionReader(out)
    assert [(t.species, t.frames) for t in r.takes] == [("bona_fide", 2), ("print", 2), ("replay", 2)]
    assert r.metadata["retention_days"] == 30 and len(r.metadata["reopened"]) == 2
    main(["inspect", str(out)])  # exits 1: the synthetic camera reports no sensor settings (a warning)
    assert "takes appended 2 times" in capsys.readouterr().out
    # without --append the folder is never written into; another site's take is refused
    assert main(ARGS + ["--out", str(out), "--species", "print", "--no-face-check"]) == 2
    assert "--append" in capsys.readouterr().err
    other_site = [a if a != "lab1" else "lab2" for a in ARGS]
    assert main(other_site + ["--out", str(out), "--append", "--species", "print", "--no-face-check"]) == 2
    assert "its site is 'lab1', not 'lab2'" in capsys.readouterr().err
    assert len(SessionReader(out).takes) == 3


def test_a_setting_that_tells_the_labels_apart_is_said_over_the_takes_of_every_command(tmp_path, capsys,
                                                                                        monkeypatch):
    """One command per take: the command that records the attack sees the bona fide take of the one before, and
    says that the emitter was on for every bona fide take and off for every attack (a model would learn the laser)."""
    from edge_fas.drivers.synthetic import SyntheticCamera

    laser = {"power": 150}
    plain = SyntheticCamera.frames

    def reporting(camera):
        for frames in plain(camera):
            yield frames.replace(meta={**frames.meta, "sensor": {"depth": {"laser_power": laser["power"],
                                                                           "auto_exposure": 1}}})
    monkeypatch.setattr(SyntheticCamera, "frames", reporting)
    out = tmp_path / "day1"
    take = ARGS + ["--out", str(out), "--append", "--frames", "2", "--no-face-check"]
    assert main(take + ["--species", "bona_fide"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["warnings"] == []
    laser["power"] = 0
    assert main(take + ["--species", "print"]) == 0
    said = capsys.readouterr()
    (warning,) = json.loads(said.out.strip().splitlines()[-1])["warnings"]
    assert "depth laser_power separates the labels: bona fide takes 150, attack takes 0" in warning
    assert f"warning: {warning}" in said.err


def test_interrupted_take_stays_readable(tmp_path):
    """A take cut off mid-way (no end_take, no close: a crash) reads back up to its last whole frame."""
    import time

    from edge_fas.apps.collect import TakeRecorder, TakeSpec
    from edge_fas.drivers.session import SessionReader, SessionWriter
    from edge_fas.types import FrameSet
    writer = SessionWriter(tmp_path / "crash", site="lab")
    rec = TakeRecorder(writer, TakeSpec("S-9", "print", consent=True))
    rgb = np.zeros((24, 32, 3), np.uint8)
    for n in range(5):
        rec.put(FrameSet(rgb=rgb + n, depth=np.full((24, 32), 400 + n, np.uint16), counters={"rgb": n}))
    deadline = time.monotonic() + 5
    while rec.frames_written < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    r = SessionReader(tmp_path / "crash")  # read while the take is still open
    frames = list(r)
    assert [int(f.rgb[0, 0, 0]) for f in frames] == list(range(5))
    assert r.takes[0].complete is False and r.takes[0].species == "print"
    rec.finish()
    writer.close()


def test_collected_takes_feed_the_training_data_loader(session, tmp_path):
    """Collected frames -> registration -> face crop -> CropSet -> CropDataset batches with the take labels:
    what `edge-fas train` consumes. A second (attack) take gives both classes."""
    torch = pytest.importorskip("torch")
    from torch.utils.data import DataLoader

    from edge_fas.calibration import register_to_color
    from edge_fas.data.crops import CropDataset, CropSet, collate
    from edge_fas.drivers.session import SessionReader
    from edge_fas.face import FaceDetector
    from edge_fas.preprocess import PreprocessParams, crop_face

    attack = tmp_path / "attack"
    assert main(ARGS + ["--out", str(attack), "--species", "print", "--subject", "S-043", "--frames", "3",
                        "--no-face-check"]) == 0
    params = PreprocessParams(size=64)
    crops, labels, species, domains = [], [], [], []
    with FaceDetector() as det:
        for path in (session, attack):
            r = SessionReader(path)
            box = None
            for frames in r:
                reg = register_to_color(frames)
                if box is None:  # the subject holds still during a take: find the face once
                    box = det.detect(reg.rgb)[0].box
                crops.append(crop_face(reg, box, params))
                labels.append(frames.truth.label)
                species.append(frames.truth.species)
                domains.append(r.metadata["domain"])
    data = CropSet.from_crops(crops, labels, species, domains)
    assert sorted(set(data.species)) == ["bona_fide", "print"] and data.present.all()
    batch = next(iter(DataLoader(CropDataset(data, augment=True), batch_size=len(data), collate_fn=collate)))
    assert batch["rgb"].shape == (9, 3, 64, 64) and batch["depth"].shape == (9, 1, 64, 64)
    assert batch["label"].tolist() == [0] * 6 + [1] * 3
    assert torch.isfinite(batch["depth"]).all() and batch["depth"].abs().sum() > 0
