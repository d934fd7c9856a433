"""Synthetic crop sets: deterministic, disjoint splits, registered depth, cache round trip, Dataset."""

import numpy as np
import pytest
import torch

from edge_fas.data import CropDataset, CropSet, balanced_sampler, collate
from edge_fas.data.synthetic import sample_plan, synthetic_crops
from edge_fas.preprocess import PreprocessParams

P = PreprocessParams(size=32)


@pytest.fixture(scope="module")
def crops(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    return synthetic_crops(["cefa"], "train", 4, params=P, width=160, height=120, cache_dir=cache), cache


def test_plan_is_deterministic_and_splits_disjoint():
    a, b = sample_plan("wmca", "train", 20), sample_plan("wmca", "train", 20)
    assert a == b
    val = sample_plan("wmca", "val", 20)
    assert not {i for i, _, _ in a} & {i for i, _, _ in val}
    species = {s for _, s, _ in sample_plan("surf", "train", 200)}
    assert "bona_fide" in species and "rigid_mask" not in species  # surf has no rigid masks
    with pytest.raises(ValueError, match="split"):
        sample_plan("wmca", "holdout", 3)


def test_uniform_attack_mix_draws_every_species_evenly():
    from collections import Counter

    from edge_fas.sim import ATTACK_SPECIES

    counts = Counter(s for _, s, _ in sample_plan("surf", "train", 1200, attack_mix="uniform"))
    attacks = sum(counts[s] for s in ATTACK_SPECIES)
    for s in ATTACK_SPECIES:  # surf's own mix has no 3-D masks; uniform has every species near 1/6
        assert abs(counts[s] / attacks - 1 / len(ATTACK_SPECIES)) < 0.05, (s, counts)
    assert sample_plan("surf", "train", 50) != sample_plan("surf", "train", 50, attack_mix="uniform")
    with pytest.raises(ValueError, match="attack_mix"):
        sample_plan("surf", "train", 3, attack_mix="balanced")


def test_weighted_attack_mix_emphasises_the_named_species():
    from collections import Counter

    from edge_fas.data.synthetic import attack_probabilities
    from edge_fas.sim import ATTACK_SPECIES

    probs = attack_probabilities("surf", {"flexible_mask": 4, "print": 0})
    assert probs["flexible_mask"] == pytest.approx(4 / (len(ATTACK_SPECIES) + 2)) and probs["print"] == 0
    assert attack_probabilities("surf", {}) == attack_probabilities("surf", "uniform")  # unlisted weigh 1
    counts = Counter(s for _, s, _ in sample_plan("surf", "train", 1200, attack_mix={"flexible_mask": 4, "print": 0}))
    attacks = sum(counts[s] for s in ATTACK_SPECIES)
    assert counts["print"] == 0 and abs(counts["flexible_mask"] / attacks - probs["flexible_mask"]) < 0.06, counts
    with pytest.raises(ValueError, match="unknown species.*silicone"):
        attack_probabilities("surf", {"silicone": 2})
    with pytest.raises(ValueError, match="not all 0"):
        attack_probabilities("surf", {s: 0 for s in ATTACK_SPECIES})


def test_crops_have_layout_labels_and_depth(crops):
    cs, cache = crops
    assert cs.rgb.shape == (4, 3, 32, 32) and cs.depth.shape == (4, 1, 32, 32)
    assert cs.present.all()
    assert set(cs.label.tolist()) <= {0, 1}
    assert ((cs.species == "bona_fide") == (cs.label == 0)).all()
    assert (cs.domain == "cefa").all()
    # registered depth lands on the face: the crop centre has measurements
    assert np.count_nonzero(cs.depth[:, 0, 12:20, 12:20]) > 0.5 * 4 * 64
    again = synthetic_crops(["cefa"], "train", 4, params=P, width=160, height=120, cache_dir=cache)
    np.testing.assert_array_equal(again.rgb, cs.rgb)
    assert len(list(cache.iterdir())) == 1


def test_dataset_items_augment_and_drop(crops):
    cs, _ = crops
    plain = CropDataset(cs)[0]
    assert plain["rgb"].dtype == torch.float32 and plain["label"].item() == cs.label[0]
    torch.testing.assert_close(plain["rgb"], torch.from_numpy(cs.rgb[0].astype(np.float32)))
    ds = CropDataset(cs, augment=True, drop={"depth": 1.0})
    item = ds[1]
    assert not item["present"][1] and item["depth"].abs().sum() == 0
    batch = collate([ds[i] for i in range(3)])
    assert batch["rgb"].shape == (3, 3, 32, 32) and batch["label"].shape == (3,)


def test_balanced_sampler_and_errors():
    labels = np.array([0] * 9 + [1])
    drawn = np.array(list(balanced_sampler(labels, 2000, seed=1)))
    assert 0.4 < np.mean(labels[drawn]) < 0.6
    with pytest.raises(ValueError, match="one class"):
        balanced_sampler(np.zeros(4, int))
    with pytest.raises(ValueError, match="unknown synthetic domain"):
        synthetic_crops(["mars"], "train", 1)


def test_cropset_save_load_concat(tmp_path, crops):
    cs, _ = crops
    cs.save(tmp_path / "x.npz")
    back = CropSet.load(tmp_path / "x.npz")
    both = CropSet.concat([back, cs.subset([0, 1])])
    assert len(both) == 6 and list(both.species[-2:]) == list(cs.species[:2])


def test_crops_are_framed_by_the_live_detector():
    from edge_fas.data.synthetic import detected_face_box
    from edge_fas.face import iou
    from edge_fas.sim import Rig

    frames = Rig("wmca", seed=0, width=640, height=480).render("bona_fide", 3, 0.5)
    box = detected_face_box(frames.rgb, frames.truth.face_box)
    assert box is not None and box != tuple(frames.truth.face_box)  # BlazeFace's own box, not the truth
    assert iou(box, frames.truth.face_box) > 0.5
    assert detected_face_box(np.zeros_like(frames.rgb), frames.truth.face_box) is None  # no face: caller falls back


def test_a_face_the_detector_misses_is_cut_at_the_truth_or_skipped_as_the_product_skips_it():
    from edge_fas.data.synthetic import synthetic_samples
    from edge_fas.errors import ConfigError
    from edge_fas.training.config import check_config, load_train_config

    class FindsNoFace:  # a detector that misses the face (the real one misses 11-40% of the rig's, by species)
        def detect(self, rgb):
            return []

    params = PreprocessParams(size=32)
    (kept,) = synthetic_samples("rand", "train", 1, seed=0, width=160, height=120)
    (skipped,) = synthetic_samples("rand", "train", 1, seed=0, width=160, height=120, missed_face="skip")
    assert kept.rendered_frames().truth.face_box is not None
    src = kept.source(params, detector=FindsNoFace())
    assert src is not None  # the default, as every cached set was made: the rig's true box
    assert skipped.source(params, detector=FindsNoFace()) is None  # the product scores no frame without a face
    # the option names its own cache entries and leaves the default's keys as they were
    assert "missed_face" not in kept.identity() and skipped.identity()["missed_face"] == "skip"
    with pytest.raises(ValueError, match="missed_face 'drop' is unknown; use one of truth, skip"):
        synthetic_samples("rand", "train", 1, missed_face="drop")
    check_config(load_train_config(None, {"data.missed_face": "skip"}))
    with pytest.raises(ConfigError, match="data.missed_face 'drop' is unknown"):
        check_config(load_train_config(None, {"data.missed_face": "drop"}))
    with pytest.raises(ConfigError, match="data.missed_face skip applies to the synthetic source"):
        check_config(load_train_config(None, {"data.missed_face": "skip", "data.source": "sessions"}))


def test_eval_scores_faces_the_detector_misses_as_the_product_does_when_told():
    import argparse

    from edge_fas.commands import eval as eval_command
    from edge_fas.data.build import test_indices
    from edge_fas.errors import ConfigError

    parser = argparse.ArgumentParser()
    eval_command.add_arguments(parser)
    meta = {"training": {"source": "synthetic", "domains": ["rand"]}}
    for flag, expected in (([], "truth"), (["--missed-face", "skip"], "skip")):
        d = eval_command.data_config(parser.parse_args(["model.pt", "--per-domain", "2", *flag]), meta)
        assert d["missed_face"] == expected and test_indices(d)["rand"].sample(0).missed_face == expected
    with pytest.raises(ConfigError, match="--missed-face skip applies to the synthetic rig"):
        eval_command.data_config(parser.parse_args(["model.pt", "--sessions", "s1", "--missed-face", "skip"]), meta)


def test_zoom_shift_augmentation_moves_all_modalities_together():
    from edge_fas.data.augment import zoom_shift

    rng = np.random.default_rng(0)
    rgb, depth = rng.random((3, 32, 32), np.float32), rng.random((1, 32, 32), np.float32)
    same = zoom_shift((rgb, depth), 1.0, (0.0, 0.0))
    assert np.array_equal(same[0], rgb) and np.array_equal(same[1], depth)
    moved = zoom_shift((rgb, depth), 1.0, (2 / 32, 0.0))  # two pixels right, both modalities
    assert np.array_equal(moved[0][..., 2:], rgb[..., :-2]) and np.array_equal(moved[1][..., 2:], depth[..., :-2])
    zoomed = zoom_shift((rgb,), 1.1, (0.0, 0.0))[0]
    assert zoomed.shape == rgb.shape and not np.allclose(zoomed, rgb)


def test_randomised_crops_key_their_cache_on_the_range_values(tmp_path):
    from edge_fas.sim.ranges import parse_custom

    near = parse_custom({"rand_x": {"pose.distance_m": [0.4, 0.45]}})
    far = parse_custom({"rand_x": {"pose.distance_m": [0.9, 1.0]}})
    a = synthetic_crops(["rand_x"], "test", 3, params=P, width=160, height=120, cache_dir=tmp_path, ranges=near)
    b = synthetic_crops(["rand_x"], "test", 3, params=P, width=160, height=120, cache_dir=tmp_path, ranges=far)
    assert len(list(tmp_path.iterdir())) == 2 and not np.array_equal(a.rgb, b.rgb)
    assert set(a.domain) == {"rand_x"}
    with pytest.raises(ValueError, match="rand_heldout"):
        synthetic_crops(["rand_y"], "test", 1, params=P)


def test_a_split_can_start_at_a_later_row_of_the_same_plan():
    """data.start trains on the people after an earlier run's rows: the same rows (index, species, moment, so the
    same per-sample cache entries) the longer plan has there, and only the synthetic source takes it."""
    from edge_fas.data.build import split_index
    from edge_fas.errors import ConfigError
    from edge_fas.training.config import check_config, load_train_config

    whole = sample_plan("rand", "train", 30, seed=5)
    assert sample_plan("rand", "train", 12, seed=5, start=18) == whole[18:]
    assert sample_plan("rand", "train", 18, seed=5) == whole[:18]
    cfg = load_train_config(None, {"data.train_domains": ["rand"], "data.per_domain": {"train": 4, "val": 2, "test": 0},
                                   "data.start": {"train": 6}})
    check_config(cfg)
    later = split_index(cfg["data"], "train")
    cfg["data"]["per_domain"] = {"train": 10, "val": 2, "test": 0}
    cfg["data"]["start"] = {"train": 0}
    first_ten = split_index(cfg["data"], "train")
    assert [s.identity() for s in later.samples()] == [s.identity() for s in list(first_ten.samples())[6:]]
    assert "from row 6" in later.meta["data"] and "from row" not in first_ten.meta["data"]
    for bad, message in (({"train": -1}, "data.start.train must be a whole row number >= 0"),
                         ({"train": 1.5}, "data.start.train must be a whole row number"),
                         ({"holdout": 3}, "unknown split.*holdout"),
                         (12000, "data.start must be a mapping")):
        with pytest.raises(ConfigError, match=message):
            check_config(load_train_config(None, {"data.start": bad}))
    with pytest.raises(ConfigError, match="data.start applies to the synthetic source"):
        check_config(load_train_config(None, {"data.start": {"train": 3}, "data.source": "sessions"}))


def test_a_later_start_keys_its_own_cached_set(tmp_path):
    first = synthetic_crops(["cefa"], "train", 2, params=P, width=160, height=120, cache_dir=tmp_path)
    later = synthetic_crops(["cefa"], "train", 2, params=P, width=160, height=120, cache_dir=tmp_path, start=2)
    whole = synthetic_crops(["cefa"], "train", 4, params=P, width=160, height=120)
    assert len(list(tmp_path.glob("*.npz"))) == 2 and later.meta["start"] == 2 and "start" not in first.meta
    assert np.array_equal(later.rgb, whole.rgb[2:]) and np.array_equal(first.rgb, whole.rgb[:2])
