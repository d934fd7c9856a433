"""Streaming data and the crop cache: the streamed crop equals the live pipeline's and issue 14's
decoding, the cache is keyed by what the pixels depend on and never serves a corrupt or stale entry,
augmentation acts at the source's resolution, batches are the same whatever the process count, and
`edge-fas cache build` resumes."""

import os

import numpy as np
import pytest
import torch

from edge_fas.cli import main as cli_main
from edge_fas.data.build import DataOptions, ref_records
from edge_fas.data.cache import NO_FACE, CropCache, crop_key
from edge_fas.data.protocols import get_protocol
from edge_fas.data.records import load
from edge_fas.data.source import face_source, finish, whole_source
from edge_fas.data.stream import BalancedSampler, SampleIndex, StreamDataset, collate_present, make_loader
from edge_fas.preprocess import PreprocessParams, crop_face
from edge_fas.types import FrameSet
from fas_tree import make_tree

P = PreprocessParams(size=16)


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return make_tree(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def records(tree):
    recs, _ = ref_records(get_protocol("mmdg-p1-cps-w").lists["train"][0], DataOptions(tree))  # CeFA: images
    return recs


def frame(rng, h=120, w=160):
    return FrameSet(rgb=rng.integers(0, 255, (h, w, 3), np.uint8), depth=rng.integers(300, 900, (h, w)).astype(np.uint16),
                    ir=rng.integers(0, 255, (h, w), np.uint8), depth_scale=0.001, registered=True)


def test_face_source_gives_the_live_crop_bit_for_bit():
    rng = np.random.default_rng(0)
    for k in range(40):  # boxes inside, across the border and mostly outside the frame, int and float
        f = frame(rng)
        x, y, s = rng.integers(-60, 150), rng.integers(-60, 110), rng.integers(8, 90)
        box = (x, y, x + s, y + int(s * rng.uniform(0.8, 1.3)))
        box = tuple(float(v) + rng.uniform(0, 1) for v in box) if k % 2 else tuple(int(v) for v in box)
        params = PreprocessParams(size=int(rng.choice([16, 32, 64])))
        src = face_source(f, box, params)
        live, streamed = crop_face(f, box, params), finish(src, params)
        for m in ("rgb", "depth", "ir", "present"):
            assert np.array_equal(getattr(live, m), getattr(streamed, m)), (k, m, box)
        assert src.nbytes <= f.rgb.nbytes + f.depth.nbytes + f.ir.nbytes  # never more than the frame
    small = face_source(f, (70, 50, 90, 70), P)
    assert small.rgb.shape == (42, 42, 3)  # the 28 px square x 1.3, a 2 px border, outward to whole pixels


def test_whole_sources_are_bounded_and_augmentation_uses_real_context():
    big = np.random.default_rng(1).integers(0, 255, (480, 640, 3), np.uint8)
    src = whole_source(big, np.full((480, 640), 500.0, np.float32), big[..., 0], P)
    assert src.rgb.shape == (32, 32, 3) and src.depth.dtype == np.uint16  # 2 x the input; integral mm kept as uint16
    # a face box whose crop square is bright, its surroundings mid-grey: a shift at the source's
    # resolution brings the grey surroundings in (the model-size zoom could only repeat the edge)
    f = FrameSet(rgb=np.full((200, 200, 3), 60, np.uint8), registered=True)
    f.rgb[60:140, 60:140] = 250
    s = face_source(f, (72, 72, 128, 128), PreprocessParams(size=32, crop_scale=80 / 56))
    plain = finish(s, PreprocessParams(size=32, crop_scale=80 / 56)).rgb
    moved = finish(s, PreprocessParams(size=32, crop_scale=80 / 56), geometry=(1.0, (0.06, 0.0))).rgb
    assert plain[0, :, :2].min() > 1.5  # bright up to the edge
    assert moved[0, :, 0].max() < 0 and moved[0, :, -1].min() > 1.5  # grey context enters on the left


def test_streamed_records_equal_issue_14_decoding_with_and_without_the_cache(tree, records, tmp_path):
    ix = SampleIndex(records, {"data": "fixture"})
    assert len(ix) == len(records) and ix.label.tolist() == [r.label for r in records]
    assert ix.sample(3) == records[3] and ix.nbytes < 2000 * len(records)
    cache = CropCache(tmp_path / "crops")
    for ds in (StreamDataset(ix, P), StreamDataset(ix, P, cache), StreamDataset(ix, P, cache)):  # fresh, fill, hit
        for i, r in enumerate(records):
            item, direct = ds[i], load(r, P)
            assert torch.equal(item["rgb"], torch.from_numpy(direct.rgb)) and torch.equal(item["ir"], torch.from_numpy(direct.ir))
            assert torch.equal(item["depth"], torch.from_numpy(direct.depth)) and int(item["label"]) == r.label
    assert len(list(cache.root.glob("*/*.npz"))) == len(records) and not list(cache.root.glob("*/.*.tmp"))
    # the protocol's missing modalities are zero and absent in every item
    item = StreamDataset(ix, P, cache, missing=("depth", "ir"))[0]
    assert item["present"].tolist() == [True, False, False] and not item["depth"].any() and not item["ir"].any()


def test_cache_keys_follow_what_the_pixels_depend_on(records, tmp_path):
    r = records[0]
    key = crop_key(r.identity(), P, False)
    assert key == crop_key(r.identity(), P, False)
    assert key != crop_key(r.identity(), PreprocessParams(size=32), False)           # model input size
    assert key != crop_key(r.identity(), PreprocessParams(size=16, crop_scale=1.2), False)  # crop parameters
    assert key != crop_key(r.identity(), P, True)                                    # a detector frames the face
    assert key == crop_key(r.identity(), PreprocessParams(size=16, rgb_mean=(0.5,) * 3, rgb_std=(0.5,) * 3), False)
    os.utime(r.files[0], ns=(0, os.stat(r.files[0]).st_mtime_ns + 10**9))           # the file was replaced
    assert key != crop_key(r.identity(), P, False)


def test_a_corrupt_entry_is_decoded_again_never_served(records, tmp_path):
    ix = SampleIndex(records[:2])
    cache = CropCache(tmp_path / "crops")
    ds = StreamDataset(ix, P, cache)
    want = ds[0]["rgb"].clone()
    assert ds.fill(1) == "built"
    key = crop_key(records[0].identity(), P, False)
    path = cache.path(key)
    data = bytearray(path.read_bytes())
    offset = data.index(b"rgb.npy") + 200  # a pixel inside the stored colour array
    for damage in ("flip", "truncate", "other key"):
        if damage == "flip":
            bad = bytearray(data)
            bad[offset] ^= 0xFF
            path.write_bytes(bytes(bad))
        elif damage == "truncate":
            path.write_bytes(bytes(data[: len(data) // 2]))
        else:
            os.replace(cache.path(crop_key(records[1].identity(), P, False)), path)
        assert cache.lookup(key)[0] == "corrupt"
        assert ds.fill(0) == "rebuilt" and torch.equal(ds[0]["rgb"], want) and ds.fill(0) == "cached"
    cache.put("0" * 64, None)  # a sample with no face is remembered as such
    assert cache.get("0" * 64) is NO_FACE


def test_augmentation_is_reproducible_per_sample_and_epoch(records, tmp_path):
    ix = SampleIndex(records)
    ds = StreamDataset(ix, P, CropCache(tmp_path / "c"), augment=True, seed=3, drop={"depth": 1.0})
    a, b = ds[2], ds[2]
    assert torch.equal(a["rgb"], b["rgb"]) and not a["present"][1] and not a["depth"].any()
    assert not torch.equal(a["rgb"], StreamDataset(ix, P)[2]["rgb"])
    ds.set_epoch(1)
    assert not torch.equal(a["rgb"], ds[2]["rgb"])
    batch = collate_present([ds[0], None, ds[1]])  # a sample with no face is left out of its batch
    assert batch["rgb"].shape == (2, 3, 16, 16) and batch["index"].tolist() == [0, 1]
    assert collate_present([None]) is None


def test_balanced_batches_are_the_same_for_one_or_two_processes():
    labels = np.array([0] * 30 + [1] * 10)
    one = list(BalancedSampler(labels, 8, seed=5))
    ranks = [list(BalancedSampler(labels, 4, seed=5, world=2, rank=r)) for r in (0, 1)]
    assert len(one) == 40 and len(ranks[0]) == 20
    for k in range(5):  # global batch k of one process = rank 0's then rank 1's batch k
        assert one[8 * k:8 * k + 8] == ranks[0][4 * k:4 * k + 4] + ranks[1][4 * k:4 * k + 4]
    draws = np.concatenate([list(BalancedSampler(labels, 8, seed=s)) for s in range(20)])
    assert abs(labels[draws].mean() - 0.5) < 0.05  # classes drawn equally often
    s = BalancedSampler(labels, 8, seed=5)
    s.set_epoch(1)
    assert list(s) != one and list(s) == list(s)
    with pytest.raises(ValueError, match="one class has no samples"):
        BalancedSampler(np.zeros(5, int), 2)


def test_synthetic_samples_stream_from_worker_processes(tmp_path):
    from edge_fas.data.synthetic import synthetic_crops, synthetic_samples

    params = PreprocessParams(size=32)
    cs = synthetic_crops(["cefa"], "val", 3, params=params, width=160, height=120, cache_dir=None)
    ix = SampleIndex(synthetic_samples("cefa", "val", 3, width=160, height=120))
    loader = make_loader(StreamDataset(ix, params, CropCache(tmp_path / "c")), 3, workers=1, persistent=False)
    (batch,) = list(loader)  # decoded in a worker process
    assert batch["label"].tolist() == cs.label.tolist() and ix.species.tolist() == cs.species.tolist()
    assert np.allclose(batch["rgb"].numpy(), cs.rgb.astype(np.float32), atol=4e-3)  # the CropSet keeps float16


def test_cache_build_command_fills_resumes_and_rebuilds(tree, tmp_path, capsys):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text("model: {name: mmfas, preset: edge, overrides: {input_size: 32, patch_size: 8, width: 24, heads: 2, "
                   "enc_depth: 1, fusion_depth: 1, head_width: 24}}\n")
    args = ["cache", "build", "--config", str(cfg), "--protocol", "mmdg-p1-cps-w", "--data-root", str(tree),
            "--set", f"data.cache_dir={tmp_path / 'cache'}", "--workers", "0", "--quiet"]
    assert cli_main(args + ["--splits", "train"]) == 0  # as if interrupted after the training split
    assert "12 samples, 0 already cached, 12 built" in capsys.readouterr().out
    assert cli_main(args) == 0
    assert "33 samples, 12 already cached, 21 built, 0 rebuilt" in capsys.readouterr().out
    victim = sorted((tmp_path / "cache" / "crops").glob("*/*.npz"))[0]
    victim.write_bytes(victim.read_bytes()[:100])
    assert cli_main(args) == 0
    assert "33 samples, 32 already cached, 0 built, 1 rebuilt" in capsys.readouterr().out
    cfg.write_text(cfg.read_text().replace("input_size: 32", "input_size: 16"))  # another model input size
    assert cli_main(args) == 0
    assert "33 samples, 0 already cached, 33 built" in capsys.readouterr().out
    assert cli_main(args + ["--splits", "dev"]) == 2
    assert "--splits 'dev'" in capsys.readouterr().err


def test_streamed_augmentation_runs_the_augment_module_steps(records):
    """Streaming applies edge_fas.data.augment (photometric per modality, cutout, dropout) from the same
    draws as augment(); with no zoom or shift the two give the same arrays."""
    from edge_fas.data.augment import AugmentParams, augment

    params = AugmentParams(zoom=(1.0, 1.0), shift=0.0, photometric=1.0, drop={"rgb": 0.3, "ir": 0.5})
    ds = StreamDataset(SampleIndex(records), P, augment=True, seed=7, augment_params=params)
    ds.set_epoch(2)
    dropped = 0
    for i in range(len(ds)):
        crop = finish(ds.source(i), P)
        want = augment(crop.rgb, crop.depth, crop.ir, crop.present, np.random.default_rng((7, 2, i)), params)
        got = ds[i]
        for k, m in enumerate(("rgb", "depth", "ir", "present")):
            assert np.array_equal(got[m].numpy(), want[k]), (i, m)
        dropped += int((~want[3]).sum())
    assert dropped > 0  # the dropout was exercised
    plain = StreamDataset(SampleIndex(records), P, augment=True, seed=7, augment_params=AugmentParams(zoom=(1.0, 1.0),
                                                                                                      shift=0.0))
    plain.set_epoch(2)
    assert not np.array_equal(plain[0]["ir"].numpy(), ds[0]["ir"].numpy())  # photometric changed the IR


def test_randomised_samples_stream_with_their_range_set(tmp_path):
    """A custom range set reaches the streamed samples, keys their cache entries on every range value,
    pickles small into the index, renders in a worker, and equals the in-memory rendering."""
    import pickle

    from edge_fas.data.build import split_index
    from edge_fas.data.synthetic import synthetic_crops
    from edge_fas.errors import ConfigError
    from edge_fas.sim.ranges import parse_custom
    from edge_fas.training import check_config, load_train_config

    def config(distance):
        return load_train_config(None, {"data.train_domains": ["rand_x", "rand"], "data.rig_size": [160, 120],
                                        "data.per_domain": {"train": 2, "val": 1, "test": 1},
                                        "data.randomization": {"rand_x": {"pose.distance_m": distance}}})

    near, far = (split_index(config(d)["data"], "train") for d in ([0.4, 0.45], [0.9, 1.0]))
    s = near.sample(0)
    assert s.domain == "rand_x" and s.ranges.values["pose.distance_m"] == (0.4, 0.45)
    assert near.sample(2).ranges.name == "rand" and near.sample(2).ranges.values == split_index(
        config([0.9, 1.0])["data"], "train").sample(2).ranges.values
    assert len(pickle.dumps(s)) < 1000  # the range set travels as its changes from a built-in set
    assert crop_key(s.identity(), P, True) != crop_key(far.sample(0).identity(), P, True)  # one value changed
    assert crop_key(near.sample(2).identity(), P, True) == crop_key(far.sample(2).identity(), P, True)

    params = PreprocessParams(size=32)
    cache = CropCache(tmp_path / "c")
    loader = make_loader(StreamDataset(near.subset([0, 1]), params, cache), 2, workers=1, persistent=False)
    (batch,) = list(loader)  # rendered in a worker process from the pickled range set
    cs = synthetic_crops(["rand_x"], "train", 2, params=params, width=160, height=120,
                         ranges=parse_custom(config([0.4, 0.45])["data"]["randomization"]))
    assert np.allclose(batch["rgb"].numpy(), cs.rgb.astype(np.float32), atol=4e-3)  # the CropSet keeps float16
    other = StreamDataset(far.subset([0]), params, cache)
    assert other.fill(0).startswith("built")  # the far set's entry is its own, never the near one's
    assert not torch.equal(other[0]["rgb"], batch["rgb"][0])
    with pytest.raises(ConfigError, match="data.val_domains.*rand_y"):
        check_config(load_train_config(None, {"data.val_domains": ["rand_y"]}))


_KILLED_TRAINER = """
import os, signal, sys
import torch
from edge_fas.data.stream import make_loader

if __name__ == "__main__":
    loader = make_loader(torch.utils.data.TensorDataset(torch.arange(64)), batch_size=1, workers=2,
                         collate_fn=torch.utils.data.default_collate)
    it = iter(loader)
    next(it)
    print(" ".join(str(w.pid) for w in it._workers), flush=True)
    os.kill(os.getpid(), signal.SIGKILL)  # as `kill -9` or the OOM killer would end a training run
"""


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")  # a zombie has ended
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads process states from /proc")
def test_workers_end_when_the_training_process_is_killed(tmp_path):
    import subprocess
    import sys
    import time

    script = tmp_path / "trainer.py"
    script.write_text(_KILLED_TRAINER)
    log = tmp_path / "pids.txt"
    with open(log, "w") as f:  # a file, not a pipe: the worker processes hold their copy of stdout open
        subprocess.run([sys.executable, str(script)], stdout=f, stderr=subprocess.STDOUT, timeout=120)
    pids = [int(p) for p in log.read_text().split()[-2:] if p.isdigit()]
    assert len(pids) == 2, log.read_text()
    deadline = time.monotonic() + 20
    while any(_running(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = [p for p in pids if _running(p)]
    for p in left:
        os.kill(p, 9)
    assert not left, f"DataLoader workers {left} outlived the killed training process"


def test_cache_build_stops_at_its_time_limit_and_says_what_trains_on_the_cache(tmp_path, capsys):
    from edge_fas.commands.cache import _per_domain_prefix
    from edge_fas.data.synthetic import synthetic_samples

    two = SampleIndex([*synthetic_samples("cefa", "train", 4, width=64, height=48),
                       *synthetic_samples("surf", "train", 4, width=64, height=48)], {"source": "synthetic"})
    assert [_per_domain_prefix(two, n) for n in (0, 3, 4, 6, 8)] == [0, 0, 0, 2, 4]  # the second domain limits
    assert _per_domain_prefix(SampleIndex(two.samples(), {"source": "datasets"}), 8) is None
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text("model: {name: mmfas, preset: edge, overrides: {input_size: 32, patch_size: 8, width: 24, heads: 2, "
                   "enc_depth: 1, fusion_depth: 1, head_width: 24}}\n"
                   "data: {train_domains: [cefa], per_domain: {train: 5, val: 3, test: 2}, rig_size: [160, 120]}\n")
    args = ["cache", "build", "--config", str(cfg), "--set", f"data.cache_dir={tmp_path / 'cache'}", "--workers", "0",
            "--quiet", "--splits", "train,val"]
    assert cli_main(args + ["--time-limit", "1e-9"]) == 0  # past the limit after the first sample
    out = capsys.readouterr().out
    assert "1 samples, 0 already cached, 1 built" in out and "train: the first 1 of 5 samples (1 per domain)" in out
    assert "--set 'data.per_domain={train: 1, val: 3, test: 2}'" in out and "val: not reached" in out
    # the decoding batch in flight (all 5 training samples here) is finished whole: more than the prefix said
    assert len(list((tmp_path / "cache" / "crops").glob("*/*.npz"))) == 5
    assert cli_main(args) == 0  # the same command again goes on from there
    assert "8 samples, 5 already cached, 3 built" in capsys.readouterr().out
    assert cli_main(args + ["--time-limit", "0"]) == 2
