"""Checkpoints round-trip through the registry and refuse files that do not fit."""

import hashlib

import pytest
import torch

from edge_fas.errors import ArtifactError
from edge_fas.models import build, load_checkpoint, save_checkpoint
from edge_fas.models.checkpoint import FORMAT

TINY = dict(input_size=32, width=24, heads=2, enc_depth=1, fusion_depth=1, head_width=24)


@pytest.fixture
def model():
    torch.manual_seed(0)
    return build("mmfas", "edge", **TINY).eval()


def test_round_trip_same_outputs_and_meta(tmp_path, model):
    import numpy as np

    path = save_checkpoint(tmp_path / "run" / "checkpoint.pt", model, epoch=3, metrics={"hter": np.float32(0.25)},
                           domains=("a", "b"), hist=np.arange(3), data=tmp_path)
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == FORMAT and set(raw) == {"format", "name", "preset", "config", "state_dict", "meta"}
    loaded, info = load_checkpoint(path)
    assert info["name"] == "mmfas" and info["preset"] == "edge" and info["meta"]["epoch"] == 3
    assert info["meta"]["domains"] == ["a", "b"] and not loaded.training
    assert info["meta"]["metrics"]["hter"] == 0.25 and info["meta"]["hist"] == [0, 1, 2] and info["meta"]["data"] == str(tmp_path)
    x = (torch.randn(2, 3, 32, 32), torch.randn(2, 1, 32, 32), torch.randn(2, 1, 32, 32))
    torch.testing.assert_close(loaded(*x)["score"], model(*x)["score"])


def test_refuses_unknown_format_missing_keys_and_shape_mismatch(tmp_path, model):
    path = save_checkpoint(tmp_path / "c.pt", model)
    data = torch.load(path, weights_only=True)
    torch.save({**data, "format": "other/9"}, tmp_path / "f.pt")
    with pytest.raises(ArtifactError, match="f.pt.*format 'other/9'"):
        load_checkpoint(tmp_path / "f.pt")
    torch.save({k: v for k, v in data.items() if k != "config"}, tmp_path / "k.pt")
    with pytest.raises(ArtifactError, match=r"k.pt lacks \['config'\]"):
        load_checkpoint(tmp_path / "k.pt")
    bad = dict(data["state_dict"])
    bad["head.1.weight"] = torch.zeros(5, 24)
    torch.save({**data, "state_dict": bad}, tmp_path / "s.pt")
    with pytest.raises(ArtifactError, match="s.pt does not fit .*head.1.weight"):
        load_checkpoint(tmp_path / "s.pt")
    torch.save({**data, "name": "nope"}, tmp_path / "n.pt")
    with pytest.raises(ArtifactError, match="n.pt cannot be rebuilt"):
        load_checkpoint(tmp_path / "n.pt")


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(ArtifactError, match="does not exist"):
        load_checkpoint(tmp_path / "none.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ArtifactError, match="junk.pt cannot be read"):
        load_checkpoint(tmp_path / "junk.pt")


# the other helpers' models (mmfas is covered above; resnet50 stands for the baselines' tuple configs)
@pytest.mark.parametrize("name", ["mmdg", "spoof_trace", "resnet50"])
def test_every_registered_model_round_trips_its_edge_preset(tmp_path, name):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # spoof_trace warns that its identity loss is off
        torch.manual_seed(0)
        model = build(name, "edge")
        loaded, info = load_checkpoint(save_checkpoint(tmp_path / f"{name}.pt", model))
    assert info["config"] == torch.load(tmp_path / f"{name}.pt", weights_only=True)["config"]
    own, back = model.state_dict(), loaded.state_dict()
    assert own.keys() == back.keys() and all(torch.equal(own[k], back[k]) for k in own)


def test_a_half_copy_loads_into_the_float_model_at_half_the_size(tmp_path, model):
    from edge_fas.models.checkpoint import save_half_copy
    path = save_checkpoint(tmp_path / "c.pt", model, epoch=2)
    half = save_half_copy(path, tmp_path / "line" / "h.pt")
    assert half.stat().st_size < 0.6 * path.stat().st_size
    loaded, info = load_checkpoint(half)
    assert info["meta"]["stored_as"] == "float16" and info["meta"]["epoch"] == 2 and info["meta"]["copied_from"] == "c.pt"
    assert info["meta"]["copied_from_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    for key, value in loaded.state_dict().items():
        assert value.dtype == model.state_dict()[key].dtype  # cast back: training continues in float32
        torch.testing.assert_close(value, model.state_dict()[key], rtol=1e-3, atol=1e-4)
    x = (torch.randn(2, 3, 32, 32), torch.randn(2, 1, 32, 32), torch.randn(2, 1, 32, 32))
    torch.testing.assert_close(loaded(*x)["score"], model(*x)["score"], rtol=1e-2, atol=1e-3)


def test_an_average_of_checkpoints_is_their_mean_without_their_operating_points(tmp_path, model):
    from edge_fas.models.checkpoint import average_checkpoints
    a = save_checkpoint(tmp_path / "a" / "c.pt", model, epoch=1, threshold=0.3, operating_point={"target": "eer"})
    torch.manual_seed(1)
    other = build("mmfas", "edge", **TINY).eval()  # other random weights, the same architecture
    b = save_checkpoint(tmp_path / "b" / "c.pt", other, epoch=1, threshold=0.4)
    soup, info = load_checkpoint(average_checkpoints([a, b], tmp_path / "soup.pt"))
    for key, value in soup.state_dict().items():
        x, y = model.state_dict()[key], other.state_dict()[key]
        want = (x.float() + y.float()) / 2 if x.is_floating_point() else x
        torch.testing.assert_close(value, want.to(value.dtype))
    x = (torch.randn(2, 3, 32, 32), torch.randn(2, 1, 32, 32), torch.randn(2, 1, 32, 32))
    assert not torch.allclose(soup(*x)["score"], model(*x)["score"])  # a new model, not a copy of the first
    meta = info["meta"]
    assert meta["averaged_from"] == ["a/c.pt", "b/c.pt"] and meta["epoch"] == 1
    assert "threshold" not in meta and "operating_point" not in meta  # the average was never validated
    with pytest.raises(ArtifactError, match="two or more"):
        average_checkpoints([a], tmp_path / "x.pt")
    another = save_checkpoint(tmp_path / "s.pt", build("spoof_trace", "edge", input_size=32))
    with pytest.raises(ArtifactError, match="not the architecture of"):
        average_checkpoints([a, another], tmp_path / "x.pt")
    assert not (tmp_path / "x.pt").exists()


def test_a_half_copy_refuses_weights_beyond_float16(tmp_path, model):
    from edge_fas.models.checkpoint import save_half_copy
    with torch.no_grad():
        next(model.parameters()).view(-1)[0] = 1e6
    path = save_checkpoint(tmp_path / "c.pt", model)
    with pytest.raises(ArtifactError, match="reaches 1e\\+06, beyond float16"):
        save_half_copy(path, tmp_path / "h.pt")
    assert not (tmp_path / "h.pt").exists()


def test_the_training_lines_kept_checkpoints_match_their_hashes_and_load():
    """checkpoints/ carries the demo model's training line between machines (checkpoints/README.md): each file
    SHA256SUMS lists is there, unchanged, a float16 copy, and rebuilds its model."""
    from pathlib import Path

    from edge_fas.artifact import sha256_file
    root = Path(__file__).resolve().parents[1]
    listed = [line.split() for line in (root / "checkpoints" / "SHA256SUMS").read_text().splitlines() if line.strip()]
    assert listed
    for digest, name in listed:
        path = root / name
        assert path.is_file() and path.parent.name == "checkpoints", name
        assert sha256_file(path) == digest, f"{name} changed: update SHA256SUMS with the file (checkpoints/README.md)"
        model, info = load_checkpoint(path)
        assert info["name"] == "spoof_trace" and info["meta"]["stored_as"] == "float16" and not model.training
        raw = torch.load(path, map_location="cpu", weights_only=True, mmap=True)["state_dict"]
        assert all(v.dtype == torch.float16 for v in raw.values() if v.is_floating_point())


def test_checkpoints_are_row_major_whatever_layout_the_model_trained_in(tmp_path):
    from edge_fas.models.checkpoint import save_half_copy

    model = build("spoof_trace", "edge", input_size=32).to(memory_format=torch.channels_last)
    assert any(not v.is_contiguous() for v in model.state_dict().values())  # the layout training on the CPU uses
    save_checkpoint(tmp_path / "c.pt", model)
    save_half_copy(tmp_path / "c.pt", tmp_path / "h.pt")
    for name in ("c.pt", "h.pt"):
        state = torch.load(tmp_path / name, weights_only=True)["state_dict"]
        assert all(v.is_contiguous() for v in state.values()), name


def test_extend_adds_a_fresh_head_to_a_trained_checkpoint_and_nothing_else(tmp_path):
    small = dict(input_size=32, layers=(1, 1, 1), width=8, dec_channels=(16, 8, 8, 8), n_res=1, cls_width=8,
                 disc_width=4, fusion_reduction=4)
    torch.manual_seed(0)
    trained = build("spoof_trace", "edge", **small).eval()
    path = save_checkpoint(tmp_path / "st.pt", trained)
    model, info = load_checkpoint(path, extend={"family_head": True})
    assert info["config"]["family_head"] is True and float(model.family_head.weight.abs().sum()) == 0.0
    for k, v in trained.state_dict().items():  # every trained weight kept
        torch.testing.assert_close(model.state_dict()[k], v)
    # saved again, it loads as it is, head and all, without `extend`
    again, _ = load_checkpoint(save_checkpoint(tmp_path / "st2.pt", model))
    assert again.family_head is not None
    # an option that adds no weights cannot extend a checkpoint, and a missing trained weight is still refused
    with pytest.raises(ArtifactError, match="add no weights"):
        load_checkpoint(path, extend={"cls_width": 8})
    raw = torch.load(path, weights_only=True)
    del raw["state_dict"]["classifier.4.weight"]
    torch.save(raw, tmp_path / "cut.pt")
    with pytest.raises(ArtifactError, match="missing weights"):
        load_checkpoint(tmp_path / "cut.pt", extend={"family_head": True})


def test_the_line_files_kept_selection_scores_are_that_files():
    """checkpoints/randomized-edge-line-sel holds the line's file scored on the selection families, so a new machine
    pairs a candidate against it unscored (checkpoints/README.md). Replacing the file without its scores would pair
    the candidate against another model: this fails until both are replaced."""
    import json
    from pathlib import Path

    import yaml

    from edge_fas.artifact import sha256_file
    root = Path(__file__).resolve().parents[1] / "checkpoints"
    kept = root / "randomized-edge-line-sel"
    record = yaml.safe_load((kept / "scored.yaml").read_text())
    assert record["checkpoint_sha256"] == sha256_file(root / "randomized-edge-line.pt"), (
        "checkpoints/randomized-edge-line.pt changed but randomized-edge-line-sel/ holds the old file's scores: score "
        "the new file as scored.yaml's commands say and replace the folder (checkpoints/README.md)")
    sets = sorted(p.parent for p in kept.glob("*/pooled_scores.csv"))
    assert [p.name for p in sets] == ["rand_heldout_skinlevel_val", "rand_heldout_val"]
    for folder in sets:
        reports = sorted(folder.glob("seed*/metrics.json"))
        assert len(reports) == 2, folder
        assert {json.loads(r.read_text())["meta"]["rig"] for r in reports} == {record["rig"]}, folder
        rows = (folder / "pooled_scores.csv").read_text().splitlines()
        assert rows[0].startswith("index,") and len(rows) - 1 == 2 * record["per_domain"], folder
