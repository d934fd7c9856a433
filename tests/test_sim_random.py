"""The randomised family of the synthetic rig: named seeded factors, held-out ranges, identities, cameras
with lens distortion, and the physics the family adds (subsurface scattering, flying pixels, hands)."""

from pathlib import Path

import numpy as np
import pytest

from edge_fas.errors import ConfigError
from edge_fas.sim import RANGE_SETS, Pose, make_rig
from edge_fas.sim.ranges import FACTORS, HELDOUT_OVERRIDES, IDENTITY_BLOCK, parse_custom
from test_sim_physics import depth_at, face_region  # the named rig's helpers, same truth layout

W, H = 160, 120


def frontal(z=0.5):
    return Pose(x=0.0, y=0.0, z=z, yaw_deg=0.0, pitch_deg=0.0, roll_deg=0.0)


def custom(**factors):
    """A range set named rand_custom: rand with `factors` fixed (dots in names written as __)."""
    return parse_custom({"rand_custom": {k.replace("__", "."): v for k, v in factors.items()}})["rand_custom"]


def test_every_factor_is_documented_and_heldout_ranges_lie_outside_training():
    rand, held = RANGE_SETS["rand"], RANGE_SETS["rand_heldout"]
    assert all(isinstance(doc, str) and doc for doc, _ in FACTORS.values())
    outside = set(held.disjoint_from(rand))
    # every overridden continuous factor is disjoint; the photo identity is swapped (procedural is shared)
    assert {k for k, v in HELDOUT_OVERRIDES.items() if isinstance(v, tuple)} <= outside
    assert "background.kind" in outside and "identity.source" not in outside
    assert rand.disjoint_from(rand) == []
    rng = np.random.default_rng(0)
    fov = [held.draw(rng, "camera.color_hfov_deg") for _ in range(50)]
    assert min(fov) > FACTORS["camera.color_hfov_deg"][1][1]


def test_the_test_ranges_lie_outside_both_training_and_heldout_ranges():
    from edge_fas.sim.ranges import TEST_OVERRIDES

    rand, held, test = RANGE_SETS["rand"], RANGE_SETS["rand_heldout"], RANGE_SETS["rand_test"]
    continuous = {k for k, v in TEST_OVERRIDES.items() if isinstance(v, tuple)}
    assert continuous <= set(test.disjoint_from(rand)) and continuous <= set(test.disjoint_from(held))
    # only procedural identities: neither photo that training or selection saw
    assert test.values["identity.source"] == ["procedural"]
    rng = np.random.default_rng(0)
    assert max(test.draw(rng, "camera.color_hfov_deg") for _ in range(50)) < FACTORS["camera.color_hfov_deg"][1][0]


def test_eval_scores_a_range_set_defined_in_a_file_and_records_it(tmp_path):
    """`edge-fas eval --ranges FILE`: the shipped second selection family (rand_heldout with procedural faces only)
    is a file, not a built-in set, so adding it changed neither the rig's fingerprint nor any cached render."""
    import json

    from edge_fas.cli import main
    from edge_fas.commands.eval import with_range_file
    from edge_fas.sim.randomized import RandomizedRig

    path = Path(__file__).resolve().parents[1] / "configs" / "ranges" / "rand_heldout_proc.yaml"
    proc = parse_custom(with_range_file({}, str(path)))["rand_heldout_proc"]  # read as eval --ranges reads it
    held = RANGE_SETS["rand_heldout"]
    assert {k for k in held.values if held.values[k] != proc.values[k]} == {"identity.source"}
    rig = RandomizedRig("rand_heldout_proc", seed=21, width=160, height=120, ranges=proc)
    assert {rig.sample("bona_fide", i).identity.source for i in range(0, 24, 4)} == {"procedural"}

    out = tmp_path / "rep"
    assert main(["eval", "demo", "--out", str(out), "--ranges", str(path), "--domains", "rand_heldout_proc",
                 "--per-domain", "4", "--rig-size", "160x120", "--seed", "21", "--split", "val", "--workers", "0",
                 "--cache-dir", str(tmp_path / "c"), "--no-plots"]) == 0
    meta = json.loads((out / "metrics.json").read_text())["meta"]
    assert meta["test_set"] == "rand_heldout_proc" and meta["samples"] == 4
    assert meta["ranges"] == {"rand_heldout_proc": {"base": "rand_heldout", "identity.source": ["procedural"]}}


def test_the_shipped_range_files_parse_and_the_bright_family_lies_above_the_training_exposure():
    from edge_fas.commands.eval import with_range_file

    files = sorted((Path(__file__).resolve().parents[1] / "configs" / "ranges").glob("*.yaml"))
    sets = {}
    for f in files:
        sets.update(parse_custom(with_range_file({}, str(f))))  # what eval --ranges accepts
    assert {"rand_heldout_proc", "rand_heldout_bright"} <= set(sets)
    bright, rand = sets["rand_heldout_bright"], RANGE_SETS["rand"]
    assert "color.exposure" in bright.disjoint_from(rand) and bright.values["color.exposure"][0] > rand.values[
        "color.exposure"][1]
    assert bright.values["color.gamma"] == rand.values["color.gamma"]  # brighter by exposure, not by rand_test's gamma
    # silicone as bright as skin in near-IR: above the training range and rand_test's, so neither is rendered again
    skinlevel, test = sets["rand_heldout_skinlevel"].values["silicone.ir_ratio"], RANGE_SETS["rand_test"].values
    assert skinlevel[0] > max(rand.values["silicone.ir_ratio"][1], test["silicone.ir_ratio"][1])


def test_a_bad_range_file_is_an_error_that_names_the_file_and_the_fix(tmp_path):
    from edge_fas.commands.eval import with_range_file

    with pytest.raises(ConfigError, match=r"--ranges .*missing.yaml: cannot read it"):
        with_range_file({}, str(tmp_path / "missing.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("rand_x:\n  camera.fov: [1, 2]\n")
    with pytest.raises(ConfigError, match=r"--ranges .*bad.yaml: .*unknown factor 'camera.fov'"):
        with_range_file({}, str(bad))
    bad.write_text("- just a list\n")
    with pytest.raises(ConfigError, match="expected a mapping of range set name"):
        with_range_file({}, str(bad))
    bad.write_text("rand_far:\n  pose.distance_m: [1.0, 1.2]\n")
    with pytest.raises(ConfigError, match=r"\['rand_far'\] already name"):  # the model's own set of that name differs
        with_range_file({"rand_far": {"pose.distance_m": [0.9, 1.0]}}, str(bad))
    assert with_range_file({"rand_far": {"pose.distance_m": [1.0, 1.2]}}, str(bad)) == {
        "rand_far": {"pose.distance_m": [1.0, 1.2]}}  # the same definition twice is fine


def test_custom_range_sets_fail_clearly():
    with pytest.raises(ConfigError, match="unknown factor 'camera.fov'"):
        parse_custom({"rand_x": {"camera.fov": [1, 2]}})
    with pytest.raises(ConfigError, match=r"low <= high"):
        parse_custom({"rand_x": {"camera.color_hfov_deg": [80, 60]}})
    with pytest.raises(ConfigError, match="must start with 'rand'"):
        parse_custom({"far": {}})
    with pytest.raises(ConfigError, match="unknown choice"):
        parse_custom({"rand_x": {"emitter.pattern": ["laser"]}})
    ok = parse_custom({"rand_far": {"base": "rand_heldout", "pose.distance_m": [1.0, 1.2]}})["rand_far"]
    assert ok.values["pose.distance_m"] == (1.0, 1.2) and ok.values["camera.color_k1"] == (-0.3, -0.16)


def test_render_contract_is_deterministic_and_seeded():
    a = make_rig("rand", seed=3, width=W, height=H).render("print", 5, t=0.4)
    b = make_rig("rand", seed=3, width=W, height=H).render("print", 5, t=0.4)
    c = make_rig("rand", seed=4, width=W, height=H).render("print", 5, t=0.4)
    for m in ("rgb", "depth", "ir"):
        assert np.array_equal(getattr(a, m), getattr(b, m))
    assert not np.array_equal(a.rgb, c.rgb)
    assert a.rgb.shape == (H, W, 3) and a.rgb.dtype == np.uint8
    assert a.depth.dtype == np.uint16 and a.ir.shape == (H, W) and not a.registered
    assert a.truth.label == 1 and a.truth.domain == "rand"
    scene = a.meta["sim"]["scene"]
    assert {"camera.color_hfov_deg", "emitter.pattern", "print.paper_ir", "pose.distance_m"} <= set(scene)


def test_identities_are_shared_within_a_block_and_differ_across_blocks():
    rig = make_rig("rand", seed=0, width=W, height=H)
    same = [rig.sample(s, i).identity for s, i in (("bona_fide", 8), ("replay", 9), ("print", 8 + IDENTITY_BLOCK - 1))]
    assert same[0] == same[1] == same[2]
    others = {rig.sample("bona_fide", 8 + IDENTITY_BLOCK * k).identity for k in range(1, 6)}
    assert same[0] not in others and len(others) == 5


def test_cameras_vary_per_block_and_a_fixed_camera_stays():
    rig = make_rig("rand", seed=0, width=W, height=H)
    fovs = {round(rig.render("bona_fide", i * 16).calibration.color.fx, 3) for i in range(3)}
    assert len(fovs) == 3
    live = make_rig("rand", seed=0, width=W, height=H, fixed_camera=True)
    assert len({round(live.render("bona_fide", i * 16).calibration.color.fx, 3) for i in range(3)}) == 1


def test_lens_distortion_is_in_the_calibration_and_the_pixels():
    """A depth keypoint deprojected and projected into colour with the calibration's distortion lands on
    the colour truth; ignoring the distortion misses it."""
    import cv2

    rs = custom(camera__color_k1=-0.28, camera__color_k2=0.0, camera__depth_k1=0.0, camera__depth_resolution=1.0,
                camera__color_hfov_deg=[55.0, 55.0], pose__offset=[0.0, 0.0], depth__smoothing_px=[0.0, 0.0])
    rig = make_rig("rand_custom", seed=1, width=320, height=240, ranges=rs)
    f = rig.render("bona_fide", 0, pose=Pose(0.2, -0.11, 0.5, 10.0, 5.0, 0.0))  # off-centre: distortion matters
    cal = f.calibration
    assert cal.color.model == "brown_conrady" and cal.color.coeffs[0] < -0.15  # strong barrel distortion kept
    hit, naive = [], []
    for name in ("nose", "eye_left", "mouth"):
        u, v = f.truth.extra["keypoints_depth"][name]
        z = depth_at(f, name, r=1) / 1000.0
        p = np.array([(u - cal.depth.cx) / cal.depth.fx * z, (v - cal.depth.cy) / cal.depth.fy * z, z])
        q = cal.depth_to_color.apply(p[None])
        px, _ = cv2.projectPoints(q, np.zeros(3), np.zeros(3), cal.color.K, cal.color.dist)
        truth = np.array(f.truth.extra["keypoints"][name])
        hit.append(np.hypot(*(px.ravel() - truth)))
        pin = np.array([cal.color.fx * q[0, 0] / q[0, 2] + cal.color.cx, cal.color.fy * q[0, 1] / q[0, 2] + cal.color.cy])
        naive.append(np.hypot(*(pin - truth)))
    assert max(hit) < 2.0, hit
    assert max(naive) > 4.0, naive


def test_a_lens_never_folds_back_inside_its_image():
    """Strong barrel distortion on a wide lens is scaled down until every pixel has a ray."""
    from edge_fas.sim.randomized import monotonic_radial

    assert monotonic_radial(-0.1, 0.0, 0.6) == (-0.1, 0.0)  # a moderate lens is kept as drawn
    k1, k2 = monotonic_radial(-0.3, -0.05, 1.2)  # 88 degrees wide: r (1 - 0.3 r^2) folds before the corner
    assert -0.3 < k1 < 0 and -0.05 < k2 <= 0
    rs = custom(camera__color_k1=-0.3, camera__color_k2=-0.05, camera__color_hfov_deg=[88.0, 88.0],
                camera__color_sharpness=[1.0, 1.0])
    view = make_rig("rand_custom", seed=0, width=W, height=H, ranges=rs).camera(0).color_view
    assert view.distorted and np.diff(view.xn, axis=1).min() > 0 and np.diff(view.yn, axis=0).min() > 0


def test_face_relief_and_flat_print_in_the_randomised_rig():
    rs = custom(camera__depth_resolution=[1.0, 1.0], depth__smoothing_px=[0.0, 0.0], emitter__pattern=["dots"])
    rig = make_rig("rand_custom", seed=2, width=320, height=240, ranges=rs)
    live = rig.render("bona_fide", 0, pose=frontal(0.5))
    nose = depth_at(live, "nose", r=2)
    cheeks = np.nanmean([depth_at(live, "cheek_right", r=2), depth_at(live, "cheek_left", r=2)])
    assert cheeks - nose >= 10.0, (nose, cheeks)
    flat = next(i for i in range(40) if rig.sample("print", i).subject.bend == 0.0)
    printed = rig.render("print", flat, pose=frontal(0.5))
    d = printed.depth[face_region(printed)].astype(float)
    d = d[d > 0]
    assert np.percentile(d, 90) - np.percentile(d, 10) < 0.5 * (cheeks - nose + 10.0)


def test_projected_dots_blur_in_skin_and_stay_sharp_on_paper():
    rs = custom(emitter__pattern=["dots"], emitter__contrast=[0.8, 0.8], emitter__density=[0.08, 0.08],
                ir__scatter_px=[3.0, 3.0], light__ir_ambient=[0.0, 0.0], ir__noise=[0.5, 0.5],
                camera__depth_resolution=[1.0, 1.0], print__ink_ir_dark=[0.0, 0.0])
    rig = make_rig("rand_custom", seed=0, width=320, height=240, ranges=rs)

    def dot_contrast(species):
        f = rig.render(species, 0, pose=frontal(0.45))
        region = face_region(f, 0.0)
        a = f.ir[region].astype(float)
        return np.abs(np.diff(a, axis=1)).mean() / max(a.mean(), 1.0)

    assert dot_contrast("print") > 1.5 * dot_contrast("bona_fide")


def test_flying_pixels_lie_between_foreground_and_background():
    base = dict(emitter__pattern=["flood"], depth__edge_px=[3.0, 3.0], depth__hole_rate=[0.0, 0.0],
                depth__dark_limit=[1.0, 1.0], camera__depth_resolution=[1.0, 1.0], depth__smoothing_px=[0.0, 0.0],
                background__behind_m=[1.0, 1.0], background__tilt_deg=[0.0, 0.0], depth__tof_noise_mm_per_m=[2.0, 2.0])
    keep = make_rig("rand_custom", seed=0, width=W, height=H, ranges=custom(depth__flying=[1.0, 1.0], **base))
    drop = make_rig("rand_custom", seed=0, width=W, height=H, ranges=custom(depth__flying=[0.0, 0.0], **base))
    fk, fd = keep.render("print", 0, pose=frontal(0.6)), drop.render("print", 0, pose=frontal(0.6))
    zk, zd = fk.depth.astype(float), fd.depth.astype(float)
    mixed = (zk > 700) & (zk < 1500)  # neither the sheet (~600 mm) nor the wall (~1600 mm)
    assert mixed.sum() > 20
    assert ((zd > 700) & (zd < 1500)).sum() < 0.2 * mixed.sum()
    assert (zd == 0).sum() > (zk == 0).sum()


def test_attackers_hands_hold_the_medium():
    from edge_fas.sim.presentations import Subject, add_hands, build_atlas

    atlas = build_atlas("print", Subject())
    held = add_hands(atlas, np.random.default_rng(0), 2, (0.8, 0.6, 0.5), 0.6, pad=100)
    assert held.alpha.shape == (atlas.alpha.shape[0] + 200, atlas.alpha.shape[1] + 200)
    outside = held.alpha.copy()
    outside[100:-100, 100:-100] = 0
    assert (outside > 0.5).sum() > 500  # hands beyond the sheet's border
    skin_ir = np.isclose(held.ir_albedo, 0.6) & (held.alpha > 0.5)
    assert (skin_ir[100:-100, 100:-100]).sum() > 300  # thumbs over the print
    assert held.origin == (atlas.origin[0] + 100, atlas.origin[1] + 100)


def test_astronaut_landmarks_match_the_face_detector():
    import cv2
    from importlib import resources

    from edge_fas.face import FaceDetector
    from edge_fas.sim.identity import ASTRONAUT_LANDMARKS

    data = (resources.files("edge_fas.assets.faces") / "astronaut.jpg").read_bytes()
    image = cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    with FaceDetector() as det:
        found = det.detect(image)
    assert found
    names = ("eye_right", "eye_left", "nose", "mouth")
    assert np.abs(found[0].keypoints[:4] - np.array([ASTRONAUT_LANDMARKS[n] for n in names])).max() < 4.0


def test_identity_sources_differ_and_the_heldout_set_draws_the_other_photo():
    rig = make_rig("rand_heldout", seed=0, width=W, height=H)
    sources = {rig.sample("bona_fide", IDENTITY_BLOCK * k).identity.source for k in range(30)}
    assert "astronaut" in sources and "hopper" not in sources
    train = make_rig("rand", seed=0, width=W, height=H)
    assert "astronaut" not in {train.sample("bona_fide", IDENTITY_BLOCK * k).identity.source for k in range(30)}


def test_scenario_and_synthetic_camera_run_the_randomised_family():
    from edge_fas.drivers.synthetic import SyntheticCamera
    from edge_fas.sim.scenario import parse_scenario

    sc = parse_scenario("demo,domain=rand_heldout,seed=2,take=0.1")
    assert sc.domain == "rand_heldout"
    with pytest.raises(ConfigError, match="rand_heldout"):
        parse_scenario("demo,domain=randomised")
    cam = SyntheticCamera(sc, width=W, height=H, realtime=False, max_frames=6).open()
    frames = list(cam.frames())
    assert len(frames) == 6 and {f.truth.species for f in frames} >= {"bona_fide", "print"}
    assert all(f.calibration is frames[0].calibration for f in frames)  # one device for the stream


def test_the_wearers_hair_lies_over_a_worn_mask_as_drawn():
    # Without it a mask replaced the forehead hair with its own material: a flat near-IR forehead marked every
    # mask, and bright-haired people looked like masks. With mask.hair_over = 1 the fringe is the wearer's hair.
    from dataclasses import replace

    from edge_fas.sim.identity import IdentityParams, identity_layers
    from edge_fas.sim.presentations import Subject, _hair_over, build_atlas

    ranges = RANGE_SETS["rand"]
    params = next(p for p in (IdentityParams.draw(ranges, np.random.default_rng(s)) for s in range(40))
                  if p.source == "procedural"
                  and (_hair_over(identity_layers(p), 1.0) * identity_layers(p).face_mask).sum() > 1000)
    person = identity_layers(params)
    fringe = (_hair_over(person, 1.0) > 0.9) & (person.face_mask > 0.5)  # the forehead's hair

    def fringe_ir(species, hair_ir, over):
        person = identity_layers(replace(params, hair_ir=hair_ir))
        atlas = build_atlas(species, Subject(), person=person, materials={"mask_hair_over": over})
        return float(atlas.ir_albedo[fringe].mean())

    bona_fide = fringe_ir("bona_fide", 0.55, 0.0) - fringe_ir("bona_fide", 0.1, 0.0)
    assert bona_fide > 0.3
    for species in ("flexible_mask", "rigid_mask", "paper_mask"):
        covered = fringe_ir(species, 0.55, 0.0) - fringe_ir(species, 0.1, 0.0)
        worn_under = fringe_ir(species, 0.55, 1.0) - fringe_ir(species, 0.1, 1.0)
        assert abs(covered) < 0.55 * bona_fide, species  # the mask's material hides most of the hair
        assert worn_under == pytest.approx(bona_fide, rel=0.05), species  # the hair in front is the wearer's
    # drawn per worn mask only, after every other draw of the sample
    rig = make_rig("rand", seed=0, width=W, height=H)
    assert 0.0 <= rig.sample("flexible_mask", 3).materials["mask_hair_over"] <= 1.0
    assert "mask_hair_over" not in rig.sample("print", 3).materials
    assert "mask.hair_over" not in rig.sample("bona_fide", 3).params


def test_the_media_lightness_is_drawn_and_moves_the_medium_not_the_wearer():
    # Without these factors every printed and worn medium rendered lighter than skin at every skin tone, a cue
    # that follows skin tone, not physics (benchmarks/bench_colour_stats.py).
    from edge_fas.sim.face_photo import FACE_CENTER, person_layers
    from edge_fas.sim.presentations import MATERIALS, Subject, _mask_region, build_atlas, halftone

    person = person_layers()
    face = person.face_mask > 0.5
    outside = (person.alpha > 0.5) & (_mask_region(person, grow=1.2) < 0.01)  # hair, clothes: the wearer's own

    def face_lightness(species, **materials):
        atlas = build_atlas(species, Subject(), person=person, materials=materials)
        ox, oy = (int(round(a - b)) for a, b in zip(atlas.origin, FACE_CENTER))  # a print's margin
        region = atlas.color[oy:oy + face.shape[0], ox:ox + face.shape[1]]  # the person's pixel grid
        return float(region[face[:len(region)]].mean()), region

    for species, key in (("print", "print_lightness"), ("paper_mask", "print_lightness"),
                         ("rigid_mask", "resin_lightness"), ("flexible_mask", "silicone_lightness")):
        dark, dark_img = face_lightness(species, **{key: 0.75})
        light, light_img = face_lightness(species, **{key: 1.1})
        assert light - dark > 0.05, species
        if species != "print":  # a worn mask: the wearer around it keeps their own colour
            np.testing.assert_array_equal(dark_img[outside[:len(dark_img)]], light_img[outside[:len(dark_img)]])
    # the printed photo spans the densest ink's reflectance to the paper's; the named domains keep their print
    ramp = np.repeat(np.linspace(0.0, 1.0, 64, dtype=np.float32)[None, :, None], 8, 0).repeat(3, 2)
    photo = halftone(ramp, strength=0.0, desaturate=0.0, black=0.02, white=0.85)
    assert photo[..., 1].min() == pytest.approx(0.02, abs=1e-4) and photo[..., 1].max() == pytest.approx(0.85, abs=1e-4)
    legacy = halftone(ramp, strength=0.0, desaturate=0.0)
    assert legacy[..., 1].min() == pytest.approx(0.08 + 0.86 * 0.1, abs=1e-4)  # office paper: lifted blacks
    assert (MATERIALS["print_black"], MATERIALS["print_white"], MATERIALS["print_lightness"]) == (0.166, 0.94, 1.0)
    # drawn per medium, after every other draw of the sample, in the randomised family only
    rig = make_rig("rand", seed=0, width=W, height=H)
    drawn = rig.sample("paper_mask", 5)
    assert 0.01 <= drawn.materials["print_black"] <= 0.12 and 0.75 <= drawn.materials["print_lightness"] <= 1.1
    assert drawn.materials["print_white"] == drawn.materials["paper_white"]
    assert list(drawn.params)[-2:] == ["print.ink_black", "print.lightness"]
    assert list(rig.sample("rigid_mask", 5).params)[-1] == "rigid.paint_lightness"
    assert list(rig.sample("flexible_mask", 5).params)[-1] == "silicone.lightness"
    assert "print.lightness" not in rig.sample("bona_fide", 5).params
