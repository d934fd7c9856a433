"""The synthetic rig's physics: relief, planarity, IR materials, domains, calibration consistency."""

import numpy as np
import pytest

from edge_fas.sim import DOMAINS, SPECIES, Pose, Rig
from edge_fas.sim.domains import DOMAIN_TABLE


def frontal(z=0.5, **kw):
    return Pose(x=0.0, y=0.0, z=z, yaw_deg=0.0, pitch_deg=0.0, roll_deg=0.0, **kw)


def depth_at(frames, name, r=3):
    x, y = np.round(frames.truth.extra["keypoints_depth"][name]).astype(int)
    patch = frames.depth[y - r:y + r + 1, x - r:x + r + 1].astype(float)
    return float(np.median(patch[patch > 0])) if (patch > 0).any() else np.nan


def face_region(frames, shrink=0.25):
    kp = np.array(list(frames.truth.extra["keypoints_depth"].values()))
    x0, y0 = kp.min(0)
    x1, y1 = kp.max(0)
    w, h = x1 - x0, y1 - y0
    return (slice(int(y0 - shrink * h), int(y1 + shrink * h)), slice(int(x0 - shrink * w), int(x1 + shrink * w)))


def plane_residual_mm(frames):
    region = face_region(frames)
    d = frames.depth[region].astype(float)
    yy, xx = np.mgrid[region[0], region[1]]
    ok = d > 0
    A = np.c_[xx[ok], yy[ok], np.ones(ok.sum())]
    coef, *_ = np.linalg.lstsq(A, d[ok], rcond=None)
    return float(np.std(d[ok] - A @ coef)), float(np.median(d[ok]))


def test_bona_fide_nose_stands_out_from_cheeks_at_half_a_metre():
    rig = Rig("wmca", seed=0)
    frames = rig.render("bona_fide", 0, pose=frontal(0.5))
    nose = depth_at(frames, "nose")
    cheeks = np.mean([depth_at(frames, "cheek_right"), depth_at(frames, "cheek_left")])
    assert cheeks - nose >= 15.0, (nose, cheeks)


@pytest.mark.parametrize("species", ["print", "replay"])
def test_print_and_replay_are_planar_within_the_noise_model(species):
    rig = Rig("cefa", seed=0)
    index = next(i for i in range(50) if rig.sample(species, i).subject.bend == 0.0)
    frames = rig.render(species, index, pose=Pose(0.02, 0.0, 0.6, 15.0, -8.0, 5.0))
    residual, z_mm = plane_residual_mm(frames)
    sigma = DOMAIN_TABLE["cefa"].noise_mm_per_m2 * (z_mm / 1000.0) ** 2
    assert residual < 2.0 * sigma + 0.5, (residual, sigma)
    live = rig.render("bona_fide", index, pose=Pose(0.02, 0.0, 0.6, 15.0, -8.0, 5.0))
    assert plane_residual_mm(live)[0] > 4.0 * residual  # a face is not a plane: the test can tell


def test_bent_print_is_curved_not_flat():
    rig = Rig("cefa", seed=0)
    bent = next(i for i in range(50) if rig.sample("print", i).subject.bend != 0.0)
    flat = next(i for i in range(50) if rig.sample("print", i).subject.bend == 0.0)
    bent_residual = plane_residual_mm(rig.render("print", bent, pose=frontal(0.6)))[0]
    flat_residual = plane_residual_mm(rig.render("print", flat, pose=frontal(0.6)))[0]
    assert bent_residual > 1.8 * flat_residual, (bent_residual, flat_residual)


def test_replay_face_is_dark_in_ir_and_skin_is_bright():
    rig = Rig("wmca", seed=0)
    live = rig.render("bona_fide", 3, pose=frontal(0.6))
    replay = rig.render("replay", 3, pose=frontal(0.6))
    printed = rig.render("print", 3, pose=frontal(0.6))
    ir = {k: float(np.median(f.ir[face_region(f, 0.0)])) for k, f in
          (("live", live), ("replay", replay), ("print", printed))}
    assert ir["live"] > 60
    assert ir["replay"] < 0.3 * ir["live"]
    assert ir["print"] > 0.8 * ir["live"]  # paper is bright at 850 nm too; its cue is flatness, not darkness


def test_ir_speckle_follows_the_emitter():
    rig = Rig("wmca", seed=0)
    on = rig.render("bona_fide", 0, pose=frontal(0.6), emitter_on=True)
    off = rig.render("bona_fide", 0, pose=frontal(0.6), emitter_on=False)
    region = face_region(on, 0.0)

    def local_contrast(f):
        a = f.ir[region].astype(float)
        return np.abs(np.diff(a, axis=1)).mean() / max(a.mean(), 1.0)

    assert local_contrast(on) > 2.0 * local_contrast(off)
    assert on.meta["emitter_on"] and not off.meta["emitter_on"]


def test_depth_noise_grows_with_distance():
    rig = Rig("padisi", seed=0)
    index = next(i for i in range(50) if rig.sample("print", i).subject.bend == 0.0)
    near = plane_residual_mm(rig.render("print", index, pose=frontal(0.4)))[0]
    far = plane_residual_mm(rig.render("print", index, pose=frontal(1.1)))[0]
    assert far > 3.0 * near


def test_four_domains_differ_in_noise_and_appearance():
    stats = {}
    for domain in DOMAINS:
        rig = Rig(domain, seed=0)
        index = next(i for i in range(50) if rig.sample("print", i).subject.bend == 0.0)
        noise = plane_residual_mm(rig.render("print", index, pose=frontal(0.9)))[0]
        live = rig.render("bona_fide", 0, pose=frontal(0.7))
        stats[domain] = (noise, live.rgb.reshape(-1, 3).mean(0), (live.depth > 0).mean())
    assert len(DOMAINS) >= 4
    for i, a in enumerate(DOMAINS):
        for b in DOMAINS[i + 1:]:
            noise_ratio = max(stats[a][0], stats[b][0]) / min(stats[a][0], stats[b][0])
            color_gap = np.abs(stats[a][1] - stats[b][1]).max()
            assert noise_ratio > 1.2 or color_gap > 12, (a, b, stats[a], stats[b])
            assert color_gap > 5, (a, b)  # appearance always differs


def test_render_is_deterministic_for_a_seed():
    a = Rig("surf", seed=3).render("rigid_mask", 5, t=0.4)
    b = Rig("surf", seed=3).render("rigid_mask", 5, t=0.4)
    c = Rig("surf", seed=4).render("rigid_mask", 5, t=0.4)
    for m in ("rgb", "depth", "ir"):
        assert np.array_equal(getattr(a, m), getattr(b, m))
    assert not np.array_equal(a.depth, c.depth)


def test_frames_are_raw_and_unregistered_with_a_realistic_rig():
    rig = Rig("cefa", seed=0)
    f = rig.render("bona_fide", 0)
    cal = f.calibration
    assert not f.registered
    assert f.rgb.dtype == np.uint8 and f.rgb.shape == (480, 640, 3)
    assert f.depth.dtype == np.uint16 and f.ir.dtype == np.uint8 and f.ir.shape == (480, 640)
    assert 0.015 <= np.linalg.norm(cal.depth_to_color.t) <= 0.05
    assert abs(cal.color.fx - cal.depth.fx) > 20  # distinct intrinsics: registration has work to do
    assert cal.ir == cal.depth and np.allclose(cal.ir_to_color.R, cal.depth_to_color.R)
    for domain in DOMAINS:
        assert 0.015 <= np.linalg.norm(Rig(domain).calibration.depth_to_color.t) <= 0.05


@pytest.mark.parametrize("species", ["bona_fide", "rigid_mask"])
def test_depth_and_colour_agree_through_the_calibration(species):
    """A depth pixel deprojected, moved by depth_to_color and projected lands on the colour truth."""
    rig = Rig("padisi", seed=1)
    f = rig.render(species, 2, pose=Pose(0.03, -0.02, 0.55, 12.0, 6.0, -4.0))
    cal = f.calibration
    for name in ("nose", "eye_left", "mouth"):
        u, v = f.truth.extra["keypoints_depth"][name]
        z = depth_at(f, name, r=1) / 1000.0
        p = np.array([(u - cal.depth.cx) / cal.depth.fx * z, (v - cal.depth.cy) / cal.depth.fy * z, z])
        q = cal.depth_to_color.apply(p[None])[0]
        uc, vc = cal.color.fx * q[0] / q[2] + cal.color.cx, cal.color.fy * q[1] / q[2] + cal.color.cy
        assert np.hypot(uc - f.truth.extra["keypoints"][name][0], vc - f.truth.extra["keypoints"][name][1]) < 2.0


def test_photo_landmarks_match_the_face_detector():
    from edge_fas.face import FaceDetector
    from edge_fas.sim.face_photo import LANDMARKS, load_photo

    photo = (load_photo() * 255).astype(np.uint8)
    with FaceDetector() as det:
        found = det.detect(photo)
    assert found
    names = ("eye_right", "eye_left", "nose", "mouth")
    measured = np.array([LANDMARKS[n] for n in names])
    assert np.abs(found[0].keypoints[:4] - measured).max() < 6.0


def test_unknown_species_and_domain_fail_clearly():
    from edge_fas.errors import ConfigError

    with pytest.raises(ConfigError, match="species 'cardboard'"):
        Rig("wmca").render("cardboard", 0)
    with pytest.raises(ConfigError, match="domain 'mars'.*surf"):
        Rig("mars")
    assert set(SPECIES) >= {"bona_fide", "print", "replay", "rigid_mask", "paper_mask", "flexible_mask", "partial"}


def test_silicone_mask_is_close_to_a_face_but_not_the_same():
    rig = Rig("wmca", seed=0)
    live = rig.render("bona_fide", 1, pose=frontal(0.55))
    mask = rig.render("flexible_mask", 1, pose=frontal(0.55))
    assert plane_residual_mm(mask)[0] > 0.5 * plane_residual_mm(live)[0]  # face-shaped relief, unlike a print
    region = face_region(live, 0.0)
    ir_live, ir_mask = live.ir[region].astype(float), mask.ir[region].astype(float)
    assert 0.7 * np.median(ir_live) < np.median(ir_mask) < 0.97 * np.median(ir_live)  # a little darker at 850 nm
