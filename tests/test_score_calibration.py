"""Score calibration: fitted on one half, it lowers the calibration error on the other half; the map is
monotone, serialisable and refused when malformed; every runtime applies the manifest's calibration."""

import math

import numpy as np
import pytest

from edge_fas.score_calibration import IDENTITY, ScoreCalibration, ece, fit_calibration, logit_of, nll


def overconfident(n, scale=3.0, shift=0.0, seed=0):
    """Logits whose true P(attack) is sigmoid(logit / scale + shift): the raw sigmoid is overconfident."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 4.0, n)
    p = 1.0 / (1.0 + np.exp(-(z / scale + shift)))
    return z, (rng.random(n) < p).astype(int)


def test_temperature_lowers_ece_on_held_out_scores():
    z, y = overconfident(4000)
    cal = fit_calibration(z[:2000], y[:2000], split="first half")
    assert cal.method == "temperature" and cal.params["a"] == pytest.approx(1 / 3, rel=0.15)
    raw = 1 / (1 + np.exp(-z[2000:]))
    after = cal.apply_logits(z[2000:])
    assert ece(after, y[2000:]) < 0.5 * ece(raw, y[2000:])
    assert nll(after, y[2000:]) < nll(raw, y[2000:])
    assert cal.split == "first half" and set(cal.fit["cv_nll"]) == {"temperature", "platt", "isotonic"}


def test_platt_chosen_when_a_bias_wins_on_held_out_folds():
    z, y = overconfident(4000, shift=-1.5, seed=1)
    cal = fit_calibration(z[:2000], y[:2000], split="s")
    assert cal.method in ("platt", "isotonic") and cal.fit["cv_nll"][cal.method] < cal.fit["cv_nll"]["temperature"]
    assert ece(cal.apply_logits(z[2000:]), y[2000:]) < ece(1 / (1 + np.exp(-z[2000:])), y[2000:])


def test_isotonic_is_monotone_clipped_and_round_trips():
    z = np.array([-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0, 4.0])
    y = np.array([0, 0, 1, 0, 1, 1, 1, 1])
    cal = fit_calibration(z, y, split="s", methods=("isotonic",))
    grid = np.linspace(-10, 10, 201)
    p = cal.apply_logits(grid)
    assert np.all(np.diff(p) >= 0) and p.min() > 0 and p.max() < 1  # never certain
    back = ScoreCalibration.from_dict(cal.to_dict())
    assert np.allclose(back.apply_logits(grid), p)


def test_perfectly_separated_validation_does_not_diverge():
    z = np.array([-5.0, -4.0, -3.0, 3.0, 4.0, 5.0])
    cal = fit_calibration(z, np.array([0, 0, 0, 1, 1, 1]), split="s", methods=("temperature", "platt"))
    assert all(math.isfinite(v) for v in cal.params.values())
    assert 0.5 < float(cal.apply_logits(np.array([3.0]))[0]) < 1.0


def test_identity_and_score_path_agree_with_logits():
    assert IDENTITY.is_identity and np.allclose(IDENTITY.calibrate(np.array([0.2, 0.9])), [0.2, 0.9])
    cal = ScoreCalibration("platt", {"a": 0.5, "b": -1.0}, "s")
    s = np.array([0.1, 0.5, 0.99], np.float32)
    assert np.allclose(cal.apply_scores(s), cal.apply_logits(logit_of(s)), atol=1e-6)
    assert np.allclose(cal.calibrate(s, logits=logit_of(s)), cal.apply_scores(s), atol=1e-6)


@pytest.mark.parametrize("bad, match", [
    ({"method": "magic", "params": {}}, "magic"),
    ({"method": "platt", "params": {"a": 1.0}}, "lacks"),
    ({"method": "isotonic", "params": {"x": [0, 1], "y": [0.9, 0.1]}}, "non-decreasing"),
])
def test_malformed_calibration_is_refused(bad, match):
    with pytest.raises(ValueError, match=match):
        ScoreCalibration.from_dict(bad)


def test_one_class_cannot_be_calibrated():
    with pytest.raises(ValueError, match="needs both"):
        fit_calibration([0.1, 0.2], [0, 0], split="s")


def test_every_runtime_returns_the_manifests_calibrated_score(tmp_path):
    from edge_fas.artifact import ArtifactError, load_artifact
    from edge_fas.export import export_model, random_batch
    from edge_fas.runtime import load_runtime
    from tests.toy_model import Tiny

    cal = ScoreCalibration("temperature", {"a": 0.25}, "toy validation")
    model = Tiny()
    art = export_model(model, tmp_path / "a", checkpoint=None, parity_count=4, parity_source="random",
                       decisions={"calibration": cal.to_dict()})
    assert art.calibration.method == "temperature"
    batch = random_batch(32, 3, np.random.default_rng(0))
    for kind, extra in (("onnxruntime", {}), ("torch", {"model": model})):
        out = load_runtime(art, kind=kind, device="cpu", **extra).infer(batch)
        assert np.allclose(out.score, 1 / (1 + np.exp(-0.25 * out.logits)), atol=1e-5), kind
    # a hand-edited calibration no longer matches the manifest digest: refused at load
    text = (tmp_path / "a" / "manifest.yaml").read_text().replace("a: 0.25", "a: 0.05")
    (tmp_path / "a" / "manifest.yaml").write_text(text)
    with pytest.raises(ArtifactError, match="modified"):
        load_artifact(tmp_path / "a")
