"""The benchmark helpers that decide whether two score files may be compared at all."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_demo  # noqa: E402

from edge_fas.sim import fingerprint  # noqa: E402


def _report(folder: Path, data: str, **meta) -> None:
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps({"meta": {"data": data, **meta}}))


def test_scores_of_another_rig_are_refused(tmp_path):
    # a change to edge_fas.sim re-renders every scene; scores of the old rig have the same species and counts,
    # so only the recorded fingerprint tells that they are other scenes
    here = f"synthetic rig {fingerprint()}, domains rand_heldout (val split, 900 per domain, seed 3, rig 640x480)"
    _report(tmp_path / "now" / "seed3", here)
    _report(tmp_path / "now" / "seed4", here)
    bench_demo.check_rendered_by_this_rig(tmp_path / "now")
    _report(tmp_path / "mixed" / "seed3", here)
    _report(tmp_path / "mixed" / "seed4", here.replace(fingerprint(), "0123456789abcdef"))
    with pytest.raises(SystemExit, match="0123456789abcdef.*bench_demo.py"):
        bench_demo.check_rendered_by_this_rig(tmp_path / "mixed")
    with pytest.raises(SystemExit, match="no seed"):
        bench_demo.check_rendered_by_this_rig(tmp_path / "empty")


def test_the_rig_field_is_read_before_the_data_text(tmp_path):
    # eval's reports carry meta.rig; the field wins over a data text that names another rig or none
    _report(tmp_path / "field" / "seed3", "synthetic rig 0123456789abcdef, old words", rig=fingerprint())
    bench_demo.check_rendered_by_this_rig(tmp_path / "field")
    _report(tmp_path / "stale" / "seed3", f"synthetic rig {fingerprint()}", rig="fedcba9876543210")
    with pytest.raises(SystemExit, match="fedcba9876543210"):
        bench_demo.check_rendered_by_this_rig(tmp_path / "stale")


def test_the_silicone_cue_audit_measures_fine_relief_and_combines_held_out():
    import numpy as np

    import bench_silicone_cues as cues
    import cv2

    from edge_fas.metrics import auc
    from edge_fas.preprocess import PreprocessParams
    from edge_fas.types import FaceCrop

    rng = np.random.default_rng(0)
    smooth = np.tile(np.linspace(0, 1, 32, dtype=np.float32), (32, 1))[None]

    def crop(depth_noise):
        depth = smooth + depth_noise * rng.standard_normal(smooth.shape).astype(np.float32)
        return FaceCrop(rgb=np.repeat(smooth, 3, 0), depth=depth, ir=smooth.copy(), present=np.ones(3, bool))

    params = PreprocessParams(size=32)
    rough, soft = cues.cues(crop(0.2), params), cues.cues(crop(0.0), params)
    assert rough["depth_fine"] > 10 * soft["depth_fine"] and soft["ir_fine"] < 1e-3  # a ramp has no fine detail
    # near-IR that follows the face's colour features at full and at half strength: the slope halves
    features = rng.standard_normal((32, 32)).astype(np.float32)
    features = cv2.GaussianBlur(features, (0, 0), 1.5)[None]
    lightness = 0.5 * np.exp(0.4 * features)
    rgb = (np.repeat(lightness, 3, 0) - np.asarray(params.rgb_mean, np.float32)[:, None, None]) \
        / np.asarray(params.rgb_std, np.float32)[:, None, None]
    slopes = [cues.cues(FaceCrop(rgb=rgb, depth=smooth, ir=k * 0.4 * features, present=np.ones(3, bool)),
                        params) for k in (1.0, 0.5)]
    assert slopes[0]["ir_colour_slope"] == pytest.approx(1.0, rel=1e-3)
    assert slopes[1]["ir_colour_slope"] == pytest.approx(0.5, rel=1e-3)
    assert slopes[0]["ir_colour_corr"] == pytest.approx(1.0, abs=1e-4)
    # the held-out combination: separable data gives AUC near 1 and few attacks pass at BPCER 5%; measurements
    # that carry nothing about the label give chance on held-out samples
    x = rng.standard_normal((400, 3))
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(int)
    s = cues.logistic_score(cues.fit_logistic(x[:200], y[:200]), x[200:])
    assert auc(s, y[200:]) > 0.97
    assert bench_demo.apcer_at_bpcer(s, y[200:], np.where(y[200:] == 1, "flexible_mask", "bona_fide"))[1][
        "flexible_mask"] < 0.2
    noise = rng.standard_normal((2000, 3))
    label = rng.integers(0, 2, 2000)
    s = cues.logistic_score(cues.fit_logistic(noise[:1000], label[:1000]), noise[1000:])
    assert 0.43 < auc(s, label[1000:]) < 0.57


def test_the_silicone_probe_reads_every_feature_group_and_fits_on_one_seed_only():
    import warnings

    import numpy as np
    import torch

    import bench_silicone_probe as probe
    from edge_fas.models import build
    from edge_fas.types import FaceCrop

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(0)
        model = build("spoof_trace", "edge", input_size=32, width=8, dec_channels=(16, 8, 8, 8), cls_width=8,
                      disc_width=4, fusion_reduction=4).eval()
    rng = np.random.default_rng(0)
    crops = [FaceCrop(rgb=rng.standard_normal((3, 32, 32)).astype(np.float32),
                      depth=rng.standard_normal((1, 32, 32)).astype(np.float32),
                      ir=rng.standard_normal((1, 32, 32)).astype(np.float32), present=np.ones(3, bool)) for _ in range(5)]
    feats = probe.features(model, crops, batch=2)
    with torch.no_grad():
        logits = model(*(torch.from_numpy(np.stack([getattr(c, k) for c in crops])) for k in ("rgb", "depth", "ir")))["logits"]
    np.testing.assert_allclose(feats["score"][:, 0], logits.numpy(), rtol=1e-5, atol=1e-5)  # the network's own logit
    width = model.encoders["rgb"].stage_channels[2]
    assert feats["stage3"].shape == (5, 3 * width) and feats["stage3_ir"].shape == (5, width)
    np.testing.assert_array_equal(feats["stage3_depth"], feats["stage3"][:, width:2 * width])
    assert feats["aux"].shape == (5, 3) and feats["phi"].shape == (5, 16) and feats["trace"].shape == (5, 10)
    assert feats["all"].shape[1] == sum(feats[k].shape[1] for k in ("score", "aux", "stage1", "stage2", "stage3",
                                                                        "trace", "phi"))
    assert probe.pixels(crops).shape == (5, 5 * 16 * 16)
    # a finer grid's groups are one stream's cells of that grid: depth is the fourth plane, near-IR the fifth
    assert probe.groups(8)[-2:] == ("pixels_depth@8", "pixels_ir@8") and probe.groups() == probe.GROUPS
    np.testing.assert_array_equal(probe.pixel_group(crops, "pixels_depth@8"), probe.pixels(crops, 8)[:, 3 * 64:4 * 64])
    np.testing.assert_array_equal(probe.pixel_group(crops, "pixels_ir@8"), probe.pixels(crops, 8)[:, 4 * 64:])
    np.testing.assert_array_equal(probe.pixel_group(crops, "pixels_depth"), probe.pixels(crops)[:, 3 * 256:4 * 256])
    shared = {}  # one pooling per grid, shared by that grid's groups
    probe.pixel_group(crops, "pixels_depth@8", shared)
    np.testing.assert_array_equal(probe.pixel_group(crops, "pixels_ir@8", shared), probe.pixels(crops, 8)[:, 4 * 64:])
    assert list(shared) == [8]
    # each seed is scored by a probe fitted on the other: a feature that carries the label in both seeds gives AUC
    # near 1, a feature that carries it in one seed only (a seed's own artefact) gives chance
    y = np.repeat([0, 1], 200)
    carried = {s: (np.c_[y + 0.5 * rng.standard_normal(400), rng.standard_normal((400, 4))], y) for s in (1, 2)}
    score, label, ridges = probe.held_out(carried)
    assert probe._auc(score, label) > 0.9 and len(ridges) == 2 and set(ridges) <= set(probe.RIDGES)
    one_seed = {1: (np.c_[y + 0.5 * rng.standard_normal(400), rng.standard_normal(400)], y),
                2: (np.c_[rng.standard_normal(400), y + 0.5 * rng.standard_normal(400)], y)}
    score, label, _ = probe.held_out(one_seed)
    assert probe._auc(score, label) < 0.7


def test_the_scene_helpers_name_the_randomised_sets_only():
    # bench_colour_stats and bench_silicone_cues read a set's scenes through these, in eval's order
    assert bench_demo.randomised_set("rand_test") == ("rand_test", [11, 12], "test")
    with pytest.raises(SystemExit, match="named_domains: expected a randomised bench_demo set"):
        bench_demo.randomised_set("named_domains")
    scenes = bench_demo.scored_scenes("rand_heldout_proc", 21, "val", 4)  # a custom range set, read from its file
    assert len(scenes) == 4 and {s.ranges.name for s in scenes} == {"rand_heldout_proc"}


def test_the_range_shift_audit_puts_one_group_back_to_the_training_ranges(tmp_path):
    import numpy as np

    import bench_range_shift
    from edge_fas.commands.eval import with_range_file
    from edge_fas.sim.ranges import RANGE_SETS, parse_custom

    groups = bench_range_shift.shifted_groups("rand_test")
    assert set(groups["ir"]) == {"ir.gain", "ir.gamma"} and list(groups["rigid"]) == ["rigid.ir"]
    for name, factors in [("ir", groups["ir"]), ("rigid", groups["rigid"])]:
        domain, text = bench_range_shift.range_file_text("rand_test", name, factors)
        path = tmp_path / f"{name}.yaml"
        path.write_text(text)
        fixed = parse_custom(with_range_file({}, str(path)))[domain]
        # the group's factors are back inside the training ranges; every other shift of rand_test stays
        still_shifted = set(fixed.disjoint_from(RANGE_SETS["rand"]))
        assert still_shifted == set(RANGE_SETS["rand_test"].disjoint_from(RANGE_SETS["rand"])) - set(factors)
        assert all(fixed.values[k] == RANGE_SETS["rand"].values[k] for k in factors)
    # a file-defined family is defined again as its base, so eval can read the file alone
    domain, text = bench_range_shift.range_file_text("rand_heldout_proc", "ir", {"ir.gain": [0.6, 1.5]})
    path = tmp_path / "proc.yaml"
    path.write_text(text)
    fixed = parse_custom(with_range_file({}, str(path)))[domain]
    assert fixed.values["identity.source"] == ["procedural"] and fixed.values["ir.gain"] == (0.6, 1.5)

    # the change and its interval: attacks that score lower in the second set pass more often there
    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(400, int), np.ones(200, int)]
    sp = np.array(["bona_fide"] * 400 + ["rigid_mask"] * 200)
    s_base = np.r_[rng.normal(0, 1, 400), rng.normal(3, 1, 200)]
    s_worse = np.r_[rng.normal(0, 1, 400), rng.normal(1, 1, 200)]
    d5, (lo5, hi5), dauc, (lo, hi) = bench_range_shift.change_interval((s_base, y, sp), (s_worse, y, sp), "rigid_mask",
                                                                       resamples=200)
    assert 0.3 < d5 and lo5 < d5 < hi5 and lo5 > 0
    assert dauc < -0.05 and lo < dauc < hi and hi < 0


def test_the_physics_audit_renders_named_domains_pooled_and_range_sets_one_each():
    import bench_physics

    from edge_fas.sim import DOMAINS

    sets = bench_physics.render_sets("named, rand_test,rand")
    assert [domains for _, domains in sets] == [list(DOMAINS), ["rand_test"], ["rand"]]
    assert "named domains" in sets[0][0] and sets[1][0].startswith("rand_test")
    with pytest.raises(SystemExit, match="unknown set 'surff'.*rand_heldout"):
        bench_physics.render_sets("named,surff")


def test_the_physics_audit_overrides_named_limits_only():
    import bench_physics

    from edge_fas.pipeline.physics import PhysicsLimits

    assert bench_physics.with_limits(PhysicsLimits(), "min_nose_over_eyes_mm=-1000, min_face_ir=0.2") == \
        PhysicsLimits(min_nose_over_eyes_mm=-1000.0, min_face_ir=0.2)
    assert bench_physics.with_limits(PhysicsLimits(), "") == PhysicsLimits()
    with pytest.raises(SystemExit, match="min_nose_mm.*min_face_ir"):
        bench_physics.with_limits(PhysicsLimits(), "min_nose_mm=3")


def test_the_face_audit_counts_each_width_band_and_the_total():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import bench_face

    rows = ([dict(width=0.05, found_plain=False, found_zoom=True)] * 3 +
            [dict(width=0.10, found_plain=True, found_zoom=True), dict(width=0.10, found_plain=False, found_zoom=False)] +
            [dict(width=0.30, found_plain=True, found_zoom=True)])
    table = bench_face.found_table(rows)
    assert table[2].startswith("| 0.00-0.08 | 3 | 0/3 = 0% [0, 63] | 3/3 = 100% [37, 100] |")  # one-sided at 0 or n
    assert table[3].startswith("| 0.08-0.12 | 2 | 1/2 = 50% ")
    assert not any(r.startswith("| 0.12-0.16") for r in table)  # an empty band is left out
    assert table[-1].startswith("| all | 6 | 2/6 = 33% ") and "| 5/6 = 83% " in table[-1]


def test_the_pose_audit_states_the_rigs_pose_as_the_gate_measures_it():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import bench_pose

    from edge_fas.calibration import Intrinsics
    from edge_fas.types import GroundTruth

    class Frames:
        truth = GroundTruth(label=0, species="bona_fide", extra={"yaw_deg": 10.0, "pitch_deg": 5.0})

    k = Intrinsics(width=640, height=480, fx=500.0, fy=500.0, cx=320.0, cy=240.0)
    # the rig's +yaw turns the face to the image's left; on the optical axis nothing else is added
    assert bench_pose.true_pose(Frames, (270, 190, 370, 290), k) == pytest.approx((-10.0, 5.0))
    # off to the right by 45 degrees of view: a face square to the axis points 45 degrees right of the ray
    assert bench_pose.true_pose(Frames, (770, 190, 870, 290), k)[0] == pytest.approx(35.0)
    (yaw_title, yaw_sets), (pitch_title, pitch_sets) = bench_pose.turned_sets()
    assert [s.values["pose.yaw_deg"] for s in yaw_sets] == [(35.0, 50.0), (-50.0, -35.0)]
    assert [s.values["pose.pitch_deg"] for s in pitch_sets] == [(30.0, 40.0), (-40.0, -30.0)]


def test_the_system_audit_counts_takes_that_got_through_and_frames_live():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import bench_system

    rows = ([("11/0", "bona_fide", "unknown", ("gathering_evidence",), "Hold still")] * 3 +
            [("11/0", "bona_fide", "live", (), "Verified")] +
            [("11/1", "print", "attack", ("flat_face", "face_dark_in_ir"), "Not verified")] * 2 +
            [("11/3", "print", "unknown", ("gathering_evidence",), "Hold still"),
             ("11/3", "print", "live", (), "Verified")] +
            [("12/1", "print", "attack", ("flat_face",), "Not verified")])
    lines = bench_system.table(rows)
    assert lines[2].startswith("| bona_fide | 1/1 = 100% ") and "| 1/4 = 25% " in lines[2]
    assert lines[2].endswith("| gathering_evidence 3 | Hold still 3 |")
    assert lines[3].startswith("| print | 1/3 = 33% ") and "| 1/5 = 20% " in lines[3]
    assert lines[3].endswith("| flat_face 3, face_dark_in_ir 2, gathering_evidence 1 | Not verified 3, Hold still 1 |")


def test_the_monitor_replay_leaves_out_the_readings_of_faces_found_flat_when_asked(tmp_path, capsys):
    import json

    import bench_monitor_replay as replay

    def reading(face, t_ms, shift, findings):
        return {"run": "surf/0", "calibration": "true", "take": face, "species": "bona_fide", "face": face,
                "t_ms": t_ms, "width": 640, "findings": findings,
                "reading": {"shift_px": list(shift), "matched_pixels": 500, "matched": 0.5, "at_search_edge": False}}
    # a right camera: two faces read right, two prints between them read 20 px off
    rows = [reading(face, 10_000.0 * face + 500.0 * i, (20.0, 0.0) if face % 2 else (1.0, 0.0),
                    ["flat_face"] if face % 2 else []) for face in (1, 2, 3, 4) for i in range(2)]
    log = tmp_path / "log.json"
    settings = replay._shipped()
    log.write_text(json.dumps({"settings": settings, "readings": rows}))
    assert replay.main(["replay", str(log)]) == 0
    assert "true           refused  1/1" in capsys.readouterr().out
    assert replay.main(["replay", str(log), "--unread", "flat_face"]) == 0
    assert "true           refused  0/1" in capsys.readouterr().out
    assert replay.main(["replay", str(log), "--unread", "flat_face+face_dark_in_ir"]) == 0  # a group: every code
    assert "true           refused  1/1" in capsys.readouterr().out
    for row in rows:
        del row["findings"]
    log.write_text(json.dumps({"settings": settings, "readings": rows}))
    with pytest.raises(SystemExit, match="log the seeds again"):
        replay.main(["replay", str(log), "--unread", "flat_face"])


def test_the_monitor_replay_refuses_where_the_monitor_would_and_puts_its_constants_back():
    import bench_monitor_replay as replay

    from edge_fas.pipeline import registration_monitor as M

    def reading(face, take, t_ms, shift, matched=0.5, matched_pixels=500):
        return {"run": "surf/0", "calibration": "x", "take": take, "species": "bona_fide", "face": face, "t_ms": t_ms,
                "width": 640, "reading": {"shift_px": list(shift), "matched_pixels": matched_pixels, "matched": matched,
                                          "at_search_edge": False}}
    # three faces (one per take), each read twice 0.5 s apart, 8 px off
    rows = [reading(face, face, 10_000.0 * face + 500.0 * i, (8.0, 0.0)) for face in (1, 2, 3) for i in range(2)]
    constants = (M.APART, M.MIN_SHARE, M.SEEN_PX)
    shipped = {"limit_px": 6.0, "faces": 5, "min_faces": 3, "interval_s": 0.5, "apart": 2.0, "min_share": 0.03,
               "seen_px": 50}
    first, drift, apart, faces = replay.replay_run(rows, shipped)
    assert first == 3 and drift == pytest.approx(8.0) and apart == pytest.approx(8.0)
    assert (faces.read, faces.seen, faces.blind) == (3, 3, [False] * 3)
    assert (faces.refused, faces.takes) == ([3], 3)  # the takes refused (for how long a refusal lasted)
    assert replay.replay_run(rows, dict(shipped, limit_px=10.0))[0] is None
    assert replay.replay_run(rows, dict(shipped, min_faces=2))[0] == 2
    # readings that explain 2% of their outline count only for how far apart outlines lie (2 x the limit: 12 px)
    weak = [dict(r, reading=dict(r["reading"], matched=0.02)) for r in rows]
    assert replay.replay_run(weak, shipped)[0] is None
    assert replay.replay_run(weak, dict(shipped, seen_share=0.03))[2] == 0.0  # ... when they explain SEEN_SHARE
    assert replay.replay_run(weak, dict(shipped, min_share=0.01))[0] == 3
    assert replay.replay_run(weak, dict(shipped, apart=1.0))[0] == 3
    assert (M.APART, M.MIN_SHARE, M.SEEN_PX) == constants  # put back after each replay
    # a day of the same visitors: faces drawn with replacement, each with all its readings, each reading taken
    day = replay.visitors(weak, M.BLIND_FACES + 5, np.random.default_rng(0))
    assert len(day) == 2 * (M.BLIND_FACES + 5) and len({r["face"] for r in day}) == M.BLIND_FACES + 5
    faces = replay.replay_run(day, shipped)[3]
    assert faces.seen == M.BLIND_FACES + 5 and faces.read == 0  # 2% explained: none read
    assert faces.blind == [False] * (M.BLIND_START - 1) + [True] * (M.BLIND_FACES + 5 - M.BLIND_START + 1)
    assert not any(replay.replay_run(replay.visitors(rows, 30, np.random.default_rng(0)), shipped)[3].blind)


def test_bench_new_face_counts_changes_of_take_on_the_new_face_s_first_frame():
    from bench_new_face import summarise

    rows = [("a/1", r) for r in [
        (0, "bona_fide", True, True, "first", "unknown"),   # a camera's first take: not a change
        (0, "bona_fide", True, False, "", "live"),
        (1, "print", False, False, "", "unknown"),          # no face yet: the take's first face comes next
        (1, "print", True, True, "look", "attack"),         # seen by the look rule
        (1, "print", True, True, "distance", "attack"),     # a face started within a take
        (2, "bona_fide", True, False, "", "live"),          # missed
    ]] + [("b/1", (0, "replay", True, True, "first", "live"))]  # another camera's first take
    s = summarise(rows)
    assert s["caught"] == {"look": 1} and s["missed"] == 1 and s["within"] == 1 and s["faces"] == 6
    assert s["bona fide live"] == "2/3 frames, 2/2 takes" and s["attack live"] == "1/4 frames, 1/2 takes"


def test_tradeoff_chooses_on_one_set_and_reports_on_the_other(tmp_path, capsys):
    import bench_tradeoff

    def report(folder, data, scores, model="runs/m/artifact"):
        folder.mkdir(parents=True)
        lines = ["index,path,dataset,label,species,score,decision"]
        lines += [f"{i},,d,{int(s != 'bona_fide')},{s},{v},0" for i, (s, v) in enumerate(scores)]
        (folder / "scores.csv").write_text("\n".join(lines) + "\n")
        (folder / "metrics.json").write_text(json.dumps({"meta": {"data": data, "model": model, "scored_by": "ort"}}))

    people = [("bona_fide", v) for v in np.linspace(0.05, 0.45, 20)]
    report(tmp_path / "val" / "seed3", "val 3", people + [("print", 0.9)] * 10 + [("flexible_mask", 0.3)] * 10)
    report(tmp_path / "test" / "seed11", "test 11", people + [("print", 0.8)] * 10 + [("flexible_mask", 0.2)] * 10)
    assert bench_tradeoff.main(["--choose", str(tmp_path / "val"), "--apply", str(tmp_path / "test"),
                                "--targets", "bpcer=0.05"]) == 0
    row = capsys.readouterr().out.splitlines()[-1].split("|")
    # chosen to reject about 5% of people, the threshold lies above 0.3: every silicone mask (0.2) passes, no print
    assert row[1].strip() == "bpcer=0.05" and row[5].strip() == "100.0%" and row[6].strip() == "0.0%"
    report(tmp_path / "other" / "seed11", "test 11", people, model="runs/n/artifact")
    with pytest.raises(SystemExit, match="disagree on model"):
        bench_tradeoff.main(["--choose", str(tmp_path / "val"), "--apply", str(tmp_path / "other")])
    with pytest.raises(SystemExit, match="both sides"):
        bench_tradeoff.main(["--choose", str(tmp_path / "val"), "--apply", str(tmp_path / "val")])


def test_the_dot_contrast_audit_sees_sharp_dots_above_blurred_ones_and_cancels_ambient_light():
    import cv2

    import bench_dot_contrast as dots

    rng = np.random.default_rng(0)
    pattern = cv2.GaussianBlur((rng.random((96, 96)) < 0.08).astype(np.float32), (0, 0), 0.6)
    pattern /= pattern.mean()
    ambient = 20.0 + 15.0 * rng.random((96, 96)).astype(np.float32)  # a textured scene lit without the emitter
    everywhere = np.ones((96, 96), bool)

    def frames(dots_seen):
        on = np.clip(ambient + 60.0 * (0.7 + 0.3 * dots_seen), 0, 255).astype(np.uint8)
        return on, np.clip(ambient, 0, 255).astype(np.uint8)

    sharp = dots.fine_contrast(dots.emitter_return(*frames(pattern)), everywhere)
    blurred = dots.fine_contrast(dots.emitter_return(*frames(cv2.GaussianBlur(pattern, (0, 0), 2.0))), everywhere)
    assert sharp > 2 * blurred
    # the ambient texture is in both frames: the return of a flat emitter has (nearly) no fine contrast
    flat = dots.fine_contrast(dots.emitter_return(*frames(np.ones_like(pattern))), everywhere)
    assert flat < 0.2 * blurred
    # a saturated pixel carries no return; too few lit pixels give no measurement
    on, off = frames(pattern)
    assert dots.emitter_return(np.full_like(on, 255), off).max() == 0
    assert np.isnan(dots.fine_contrast(dots.emitter_return(on, off), np.zeros_like(everywhere)))


def test_models_are_compared_pair_by_pair_on_the_named_domains_too(tmp_path, capsys):
    # the named domains draw no skin factors: their scenes come from the reports, which must match row by row
    import bench_compare

    rng = np.random.default_rng(0)
    species = ["bona_fide", "rigid_mask"] * 40
    datasets = ["surf"] * 40 + ["cefa"] * 40

    def folder(name, scores, datasets=datasets):
        _report(tmp_path / name / "named_domains" / "seed7", "", rig=fingerprint())
        rows = ["index,path,dataset,label,species,score,decision"]
        rows += [f"{i},,{d},{int(s != 'bona_fide')},{s},{v:.6f},1"
                 for i, (d, s, v) in enumerate(zip(datasets, species, scores))]
        (tmp_path / name / "named_domains" / "pooled_scores.csv").write_text("\n".join(rows) + "\n")
        return tmp_path / name

    attack = np.array([s != "bona_fide" for s in species])
    weak = folder("weak", rng.random(80) + 0.3 * attack)
    strong = folder("strong", rng.random(80) + 3.0 * attack)
    bench_compare.compare("named_domains", "surf,cefa,wmca,padisi", "7", "test", weak, strong, 900, 200)
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("- AUC rigid_mask"))
    assert line.split(": ")[1].split(" -> ")[1].startswith("1.000") and "gap" not in out
    every = next(x for x in out.splitlines() if x.startswith("- AUC all attacks"))
    assert every.split(": ")[1].split(" -> ")[1].startswith("1.000")  # one species: the same AUC as its own
    assert line.endswith("(interval excludes 0)")  # 0.3 -> 3.0 separation: the rise is beyond the scenes
    other = folder("other", rng.random(80), datasets=datasets[::-1])  # the same species, other scenes
    with pytest.raises(SystemExit, match="do not hold the same scenes"):
        bench_compare.compare("named_domains", "surf,cefa,wmca,padisi", "7", "test", weak, other, 900, 200)


def test_recipes_of_several_runs_are_compared_with_the_runs_spread_in_each_interval(tmp_path, capsys):
    # recipe mode: each side's figure is its runs' mean, and the interval widens by the runs' spread, so a change
    # the scenes alone would call real is not called real when the runs of one recipe disagree about it
    import bench_compare

    a = [{"x": 1.0}, {"x": 2.0}, {"x": 3.0}]
    b = [{"x": 5.0}, {"x": 7.0}]
    # pooled s = sqrt((2 + 2) / 3); t(0.975, 3) = 3.182; sqrt(1/3 + 1/2)
    assert bench_compare.runs_spread(a, b, "x") == pytest.approx(3.182 * np.sqrt(4 / 3) * np.sqrt(5 / 6))
    assert bench_compare.runs_spread(a[:1], b[:1], "x") == 0.0  # one run a side: no spread to measure

    rng = np.random.default_rng(1)
    species = ["bona_fide", "rigid_mask"] * 40
    attack = np.array([s != "bona_fide" for s in species])
    base = rng.random(80)

    def folder(name, lift):  # the same scenes' noise in every run; runs differ only by how far attacks are lifted
        _report(tmp_path / name / "named_domains" / "seed7", "", rig=fingerprint())
        rows = ["index,path,dataset,label,species,score,decision"]
        rows += [f"{i},,surf,{int(s != 'bona_fide')},{s},{v:.6f},1"
                 for i, (s, v) in enumerate(zip(species, base + lift * attack))]
        (tmp_path / name / "named_domains" / "pooled_scores.csv").write_text("\n".join(rows) + "\n")
        return tmp_path / name

    def auc_line(a, b):
        bench_compare.compare("named_domains", "surf", "7", "test", a, b, 900, 200)
        out = capsys.readouterr().out
        return next(x for x in out.splitlines() if x.startswith("- AUC rigid_mask"))

    weak = [folder(f"weak{i}", 0.10 + 0.01 * i) for i in range(3)]
    agreeing = [folder(f"agree{i}", 0.60 + 0.01 * i) for i in range(2)]
    line = auc_line(weak, agreeing)
    assert "(interval excludes 0)" in line
    assert "runs' spread" in line and line.count(", ") >= 3  # every run's own figure is printed
    disagreeing = [folder("lucky", 0.90), folder("unlucky", 0.0)]  # the same mean lift, runs far apart
    line = auc_line(weak, disagreeing)
    assert "(interval excludes 0)" not in line
    # the scenes alone (one run a side) would have called the lucky run's rise real
    assert "(interval excludes 0)" in auc_line(weak[0], disagreeing[0])
    with pytest.raises(SystemExit, match="seed-floor"):
        bench_compare.compare("named_domains", "surf", "7", "test", weak, agreeing, 900, 200,
                              seed_floor=(weak[0], weak[1]))


def test_the_matched_silicone_audit_renders_the_scene_it_is_given():
    import bench_silicone_matched as matched

    from edge_fas.sim.randomized import RandomizedRig

    rig = RandomizedRig("rand", seed=300, width=160, height=120)
    v = matched.variants(rig, 5)
    # the mask as drawn, rendered through the patch, is the rig's own frame of that sample, pixel for pixel
    own = rig.render("flexible_mask", 5)
    patched = matched.render_variant(rig, *v["mask"], 5)
    assert np.array_equal(own.rgb, patched.rgb) and np.array_equal(own.ir, patched.ir)
    assert rig.sample("flexible_mask", 5).species == "flexible_mask"  # the patch is undone
    # one factor group differs from the neutral mask in that group's materials only
    neutral = v["neutral"][0].materials
    for group, keys in matched.GROUPS.items():
        changed = {k for k, x in v[f"neutral + {group}"][0].materials.items() if x != neutral[k]}
        assert changed <= set(keys)
    # the same scene at the same frame noise is the same frame; other noise is another frame; the neutral mask and
    # the wearer's own face differ (the mask's atlas is built anew, not taken from the previous variant's cache)
    skin_a = matched.render_variant(rig, *v["skin"], 5)
    skin_b = matched.render_variant(rig, *v["skin"], 5)
    assert np.array_equal(skin_a.ir, skin_b.ir)
    assert not np.array_equal(skin_a.ir, matched.render_variant(rig, *v["skin'"], 5).ir)
    neutral_frame = matched.render_variant(rig, *v["neutral"], 5)  # same species and index as the mask
    assert not np.array_equal(skin_a.rgb, neutral_frame.rgb) and not np.array_equal(own.rgb, neutral_frame.rgb)
    assert np.array_equal(matched.render_variant(rig, *v["mask"], 5).rgb, own.rgb)


def test_the_frame_mean_leaves_holes_out():
    import bench_silicone_frames as frames

    from edge_fas.types import FaceCrop

    ones = np.ones((1, 4, 4), np.float32)
    a = FaceCrop(rgb=np.zeros((3, 4, 4), np.float32), depth=2 * ones, ir=ones.copy(), present=np.ones(3, bool))
    hole = ones.copy()
    hole[0, 0, 0] = 0.0  # no measurement in the second frame at one pixel
    b = FaceCrop(rgb=np.ones((3, 4, 4), np.float32), depth=4 * hole, ir=3 * hole, present=np.ones(3, bool))
    m = frames.mean_crop([a, b])
    assert np.allclose(m.rgb, 0.5)
    assert m.depth[0, 0, 0] == 2.0 and m.depth[0, 1, 1] == 3.0  # the hole does not pull the mean to 0
    assert m.ir[0, 0, 0] == 1.0 and m.ir[0, 1, 1] == 2.0
    none = FaceCrop(rgb=a.rgb, depth=0 * ones, ir=0 * ones, present=a.present)
    assert (frames.mean_crop([none, none]).depth == 0).all()  # a hole in every frame stays a hole


def test_the_silicone_audits_refuse_a_benchmark_seed():
    import bench_silicone_matched as matched

    matched.refuse_benchmark_seed("rand_test", 300)  # no benchmark's
    with pytest.raises(SystemExit, match="rig seed 11 of rand_test is benchmark set rand_test's"):
        matched.refuse_benchmark_seed("rand_test", 11)


def test_the_silicone_probe_frames_crops_at_the_detectors_box_unless_told_the_truth():
    import numpy as np

    import bench_silicone_probe as probe
    from edge_fas.data.synthetic import _rig, detected_face_box, register
    from edge_fas.preprocess import PreprocessParams, crop_face, framed_box

    params = PreprocessParams(size=64)
    frames = _rig("rand", 0, 640, 480).render("bona_fide", 0)
    truth = frames.truth.face_box
    found = detected_face_box(frames.rgb, truth)
    assert found is not None and tuple(found) != tuple(truth)  # the detector frames the face its own way
    by_truth = probe._crop(("rand", 0, "bona_fide", 0, 640, 480, params, "truth"))
    by_detector = probe._crop(("rand", 0, "bona_fide", 0, 640, 480, params, "detector"))
    np.testing.assert_array_equal(by_truth.rgb, crop_face(register(frames), truth, params).rgb)
    np.testing.assert_array_equal(by_detector.rgb, crop_face(register(frames), found, params).rgb)
    assert not np.array_equal(by_truth.rgb, by_detector.rgb)
    # metric: the product's framing, preprocess.framed_box, whatever the artifact's own framing
    reg = register(frames)
    x0, y0, x1, y1 = framed_box(reg, found, PreprocessParams(size=64, framing="metric"))
    by_metric = probe._crop(("rand", 0, "bona_fide", 0, 640, 480, params, "metric"))
    np.testing.assert_array_equal(by_metric.rgb, crop_face(reg, (x0, y0, x1, y1), params).rgb)


def test_bench_demo_scores_at_the_products_framing_when_told_and_refuses_factors_then(tmp_path, monkeypatch):
    import edge_fas.cli

    calls = []
    monkeypatch.setattr(edge_fas.cli, "main", lambda argv: calls.append(argv) or 0)
    bench_demo.run_eval("m", tmp_path, "rand_heldout", "3,4", "val", 10, 1, missed_face="skip")
    bench_demo.run_eval("m", tmp_path, "rand_heldout", "3", "val", 10, 1)
    assert [a[a.index("--seed") + 1] for a in calls] == ["3", "4", "3"]
    assert all(a[a.index("--missed-face") + 1] == "skip" for a in calls[:2]) and "--missed-face" not in calls[2]
    monkeypatch.setattr(sys, "argv", ["bench_demo.py", "--missed-face", "skip", "--factors", "8"])
    with pytest.raises(SystemExit, match="cannot be lined up: drop --factors"):
        bench_demo.main()


@pytest.mark.parametrize("seed", [0, 1, 3, 38])
def test_the_int8_check_refuses_a_seed_the_export_renders(monkeypatch, capsys, seed):
    # export calibrates on seed 0, gates on 1, chooses mixed-precision nodes on 3 and confirms them on 38: a check
    # on one of those is not untouched, and it is refused before anything is loaded or rendered
    import bench_int8

    monkeypatch.setattr(sys, "argv", ["bench_int8.py", "--model", "no-such-artifact", "--check", "600",
                                      "--seed", str(seed)])
    assert bench_int8.main() == 2
    assert f"--seed {seed}: export renders that seed" in capsys.readouterr().err
