"""`edge-fas eval physics`: the model-free physics check scored like a model on recorded sessions (what a
site runs before relying on it) and on synthetic domains; the config's limits applied; misuse refused."""

import csv
import json

import pytest

from edge_fas.cli import main as cli_main
from edge_fas.errors import ConfigError

TAKES = ["bona_fide", "print", "bona_fide", "replay", "bona_fide", "print"]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A session as `edge-fas collect` writes it: labelled takes of three frames on the synthetic rig."""
    from edge_fas.drivers.session import SessionWriter
    from edge_fas.sim import Rig

    path = tmp_path_factory.mktemp("site") / "lobby-day0"
    rig = Rig("cefa", seed=6, width=320, height=240)
    with SessionWriter(path, device=rig.device, calibration=rig.calibration, site="lobby", domain="lobby") as w:
        for k, species in enumerate(TAKES):
            w.begin_take(species=species, subject_id=f"S{k}", consent=True)
            for t in (0.0, 0.4, 0.8):
                w.write(rig.render(species, 30 + k, t))
            w.end_take()
    return str(path)


def _report(folder):
    doc = json.loads((folder / "metrics.json").read_text())
    return doc["metrics"], doc["meta"]


def test_sessions_get_an_iso_report_with_the_measurements_beside_their_limits(site, tmp_path):
    out = tmp_path / "phys"
    assert cli_main(["eval", "physics", "--sessions", site, "--out", str(out), "--no-plots"]) == 0
    m, meta = _report(out)
    assert meta["scored_by"].startswith("physics check") and meta["source"] == "sessions"
    assert meta["limits"]["min_plane_relief_mm"] == 12.0
    assert meta["samples"] + meta["skipped_no_face"] == 3 * len(TAKES)
    assert m["apcer"]["print"] == 0.0 and m["apcer"]["replay"] == 0.0  # flat media vetoed
    assert m["bpcer"] < 0.5
    with open(out / "measurements.csv") as f:
        rows = list(csv.DictReader(f))
    prints = [r for r in rows if r["species"] == "print"]
    assert prints and all(float(r["plane_relief_mm"]) < 12.0 or r["findings"] for r in prints)
    assert all(r["path"].startswith("lobby-day0/") for r in rows)
    page = (out / "metrics.md").read_text()
    assert "| plane_relief_mm (12) | bona_fide |" in page
    assert "| print | 2 | 0 | 0/3 | 0 | 0/6 |" in page  # per take: two print takes, no frame or decision live


def test_the_configs_limits_are_the_ones_judged(site, tmp_path):
    out = tmp_path / "ir-only"
    # the near-IR level check alone: prints reflect near-IR like skin and pass it, screens do not
    assert cli_main(["eval", "physics", "--sessions", site, "--out", str(out), "--no-plots",
                     "--decision-physics-checks", "ir"]) == 0
    m, meta = _report(out)
    assert meta["checks"] == ["ir"]
    assert m["apcer"]["print"] > 0.5 and m["apcer"]["replay"] == 0.0


def test_synthetic_domains_are_scored_too(tmp_path):
    out = tmp_path / "syn"
    assert cli_main(["eval", "physics", "--domains", "surf", "--per-domain", "8", "--rig-size", "320x240",
                     "--seed", "5", "--out", str(out), "--no-plots"]) == 0
    m, meta = _report(out)
    assert meta["source"] == "synthetic" and meta["samples"] > 0 and "surf" in meta["data"]


@pytest.mark.parametrize("argv,match", [
    (["eval", "physics", "--sessions", "S", "--out", "R", "--target", "apcer=0.01"], "--target do not apply"),
    (["eval", "physics", "--protocol", "mmdg-p1-cps-w", "--out", "R"], "--protocol do not apply"),
    (["eval", "physics", "--out", "R"], "needs data: --sessions"),
    (["eval", "demo", "--domains", "surf", "--out", "R", "--decision-physics-min-relief-mm", "3"],
     "apply to `edge-fas eval physics` only"),
    (["eval", "physics", "--domains", "surf", "--out", "R", "--decision-physics-checks", "reliefs"],
     "decision.physics_checks"),
])
def test_misuse_is_refused_with_the_fix(argv, match, tmp_path, monkeypatch):
    from edge_fas.cli import build_parser
    from edge_fas.commands.eval import run

    monkeypatch.chdir(tmp_path)  # a refusal must come before anything is written: nothing lands here
    with pytest.raises(ConfigError, match=match):
        run(build_parser().parse_args(argv))
    assert list(tmp_path.iterdir()) == []


def test_tables_count_frames_below_each_limit_and_live_frames_per_take():
    from edge_fas.pipeline.physics import PhysicsLimits
    from edge_fas.physics_eval import measurement_table, take_table

    rows = [dict(species="bona_fide", take="s/a", score=0.2, measurements={"plane_relief_mm": 30.0}),
            dict(species="bona_fide", take="s/a", score=0.7, measurements={"plane_relief_mm": 10.0}),
            dict(species="print", take="s/b", score=0.9, measurements={"plane_relief_mm": 2.0}),
            dict(species="print", take="s/c", score=0.4, measurements={"plane_relief_mm": 13.0, "face_ir": 0.5})]
    table = measurement_table(rows, PhysicsLimits())
    assert "| plane_relief_mm (12) | bona_fide | 2/2 |" in table and table.count("| 1/2 (50%) |") == 2
    assert "| face_ir (0.1) | print | 1/2 |" in table and "nose_over_eyes_mm" not in table  # nothing measured
    takes = take_table(rows)
    assert "| bona_fide | 1 | 1 | 1/2 | 0 | 0/2 |" in takes and "| print | 2 | 1 | 1/1 | 0 | 0/2 |" in takes


def test_a_frame_the_check_cannot_measure_is_never_live(tmp_path):
    from edge_fas.drivers.session import SessionWriter
    from edge_fas.sim import Rig

    path = tmp_path / "no-depth"
    rig = Rig("cefa", seed=6, width=320, height=240)
    with SessionWriter(path, device=rig.device, calibration=rig.calibration, site="lobby", domain="lobby") as w:
        for k in range(2):
            w.begin_take(species="bona_fide", subject_id=f"S{k}", consent=True)
            frames = rig.render("bona_fide", 40 + k, 0.0)
            frames.depth = None  # the depth stream lost: no relief to measure
            w.write(frames)
            w.end_take()
    out = tmp_path / "r"
    # as live, a frame set without a required modality is refused by the stream checks before any measurement
    with pytest.raises(ConfigError, match=r"stream checks refused every frame \(missing_modality\)"):
        from edge_fas.cli import build_parser
        from edge_fas.commands.eval import run
        run(build_parser().parse_args(["eval", "physics", "--sessions", str(path), "--out", str(out), "--no-plots"]))
    assert cli_main(["eval", "physics", "--sessions", str(path), "--out", str(out), "--no-plots",
                     "--decision-required-modalities", "rgb"]) == 0  # IR, unregistrable without depth, goes too
    m, meta = _report(out)
    assert meta["unmeasured"] == meta["samples"] == 2 and m["bpcer"] == 1.0


def test_frames_per_take_sets_how_many_frames_of_each_take_are_scored(site, tmp_path):
    out = tmp_path / "two"
    assert cli_main(["eval", "physics", "--sessions", site, "--out", str(out), "--no-plots",
                     "--frames-per-take", "2"]) == 0
    _, meta = _report(out)
    assert meta["samples"] + meta["skipped_no_face"] == 2 * len(TAKES)


def test_takes_are_decided_through_the_pipelines_window(site, tmp_path):
    out = tmp_path / "window"
    assert cli_main(["eval", "physics", "--sessions", site, "--out", str(out), "--no-plots",
                     "--decision-window", "3", "--decision-min-live-frames", "2"]) == 0
    with open(out / "measurements.csv") as f:
        rows = list(csv.DictReader(f))
    by_take = {}
    for r in rows:
        by_take.setdefault(r["path"].rsplit("/", 1)[0], []).append(r)
    clean = 0
    for frames in by_take.values():
        decisions = [r["decision"] for r in frames]
        if frames[0]["species"] == "bona_fide" and all(float(r["score"]) < 0.5 for r in frames):
            assert decisions == ["unknown", "live", "live"]  # the window fills: live from the second live frame
            clean += 1
        elif frames[0]["species"] != "bona_fide":
            assert "live" not in decisions
    assert clean >= 1  # the rule above was exercised
    page = (out / "metrics.md").read_text()
    assert "decision.window 3, min_live_frames 2" in page


def test_frames_the_distance_or_pose_check_turns_away_are_counted_and_break_the_window(site, tmp_path, monkeypatch):
    import edge_fas.physics_eval as PE
    from edge_fas.pipeline import decision as D

    real = PE.gate_faults
    # every take's middle frame (recorded at 0.4 s) is a turned head; the rest go through the real gates
    monkeypatch.setattr(PE, "gate_faults", lambda frames, chosen, d, face: [D.reason(D.FACE_TURNED, "test")]
                        if frames.timestamp_ms == 400.0 else real(frames, chosen, d, face))
    out = tmp_path / "gated"
    assert cli_main(["eval", "physics", "--sessions", site, "--out", str(out), "--no-plots",
                     "--decision-window", "3", "--decision-min-live-frames", "2"]) == 0
    _, meta = _report(out)
    assert meta["turned_away"] >= len(TAKES) - 1 and meta["samples"] + meta["skipped_no_face"] + \
        meta["turned_away"] == 3 * len(TAKES)
    assert any(k.endswith(": face_turned") for k in meta["turned_away_by_species_and_reason"])
    with open(out / "measurements.csv") as f:
        rows = list(csv.DictReader(f))
    # with the middle frame turned away the window never holds two live frames: no take goes live
    assert rows and all(r["decision"] != "live" for r in rows)
    assert "turned away before the physics check" in (out / "metrics.md").read_text()


def test_a_site_whose_every_face_is_turned_away_is_told_which_keys_did_it(site, tmp_path):
    from edge_fas.cli import build_parser
    from edge_fas.commands.eval import run

    argv = ["eval", "physics", "--sessions", site, "--out", str(tmp_path / "far"), "--no-plots",
            "--decision-min-distance-m", "0.1", "--decision-max-distance-m", "0.2"]
    with pytest.raises(ConfigError, match=r"turned away before the physics check \(face_too_far\).*max_distance_m"):
        run(build_parser().parse_args(argv))


def test_the_stream_checks_refuse_a_frozen_frame_and_break_the_window(site, tmp_path):
    """A frame whose image repeats the previous one (a frozen or replayed stream) was scored like any other."""
    import shutil

    frozen = tmp_path / "frozen"
    shutil.copytree(site, frozen)
    take = frozen / "takes" / "0001"  # bona fide: its second frame repeats the first frame's images
    for stream in ("rgb", "depth", "ir"):
        shutil.copyfile(take / stream / "000000.png", take / stream / "000001.png")
    out = tmp_path / "r"
    assert cli_main(["eval", "physics", "--sessions", str(frozen), "--out", str(out), "--no-plots",
                     "--decision-window", "2", "--decision-min-live-frames", "2"]) == 0
    _, meta = _report(out)
    assert meta["stream_faults"] == 1 and list(meta["stream_faults_by_species_and_reason"]) == \
        ["bona_fide: repeated_frame"], meta
    assert meta["samples"] + meta["skipped_no_face"] + meta["turned_away"] + 1 == 3 * len(TAKES)
    assert "Frames the stream checks refused" in (out / "metrics.md").read_text()
