"""Export: parity failures are caught and located, folders are not silently overwritten, int8
quantisation records its measured change, and `edge-fas bench` prints a table (tiny model)."""

import json

import numpy as np
import pytest
import torch

from edge_fas.cli import main
from edge_fas.errors import ArtifactError, EdgeFasError
from edge_fas.export import export_model, random_batch
from edge_fas.runtime import load_artifact, load_runtime
from edge_fas.runtime.quantize import add_int8
from test_runtime import Tiny


class Noisy(Tiny):
    """Adds noise at inference: PyTorch and ONNX Runtime draw different numbers, so parity must fail."""

    def forward(self, rgb, depth, ir, present=None):
        out = super().forward(rgb, depth, ir, present)
        out["score"] = out["score"] + 0.01 * torch.rand_like(out["score"])
        return out


def test_parity_failure_names_the_frame_set(tmp_path):
    torch.manual_seed(0)
    with pytest.raises(ArtifactError, match=r"parity failed: .* at frame set \d+"):
        export_model(Noisy(), tmp_path / "a", parity_count=8, parity_source="random")
    assert not (tmp_path / "a" / "manifest.yaml").exists()  # no artifact is left behind looking valid


def test_manifest_records_parity_and_refuses_overwrite(tmp_path):
    torch.manual_seed(0)
    a = export_model(Tiny(), tmp_path, parity_count=8, parity_source="random", threshold=0.3, threshold_split="dev")
    p = a.manifest["export"]["parity"]
    assert p["frame_sets"] == 8 and p["max_abs_diff"]["score"] <= 1e-4
    assert a.manifest["inputs"]["rgb"] == ["batch", 3, 32, 32]
    with pytest.raises(EdgeFasError, match="--force"):
        export_model(Tiny(), tmp_path, parity_count=8, parity_source="random")


def test_the_manifest_carries_the_framing_to_the_runtime(tmp_path):
    """A model trained on depth-sized crops is cut that way live: the framing travels in the manifest."""
    from edge_fas.preprocess import PreprocessParams

    torch.manual_seed(0)
    metric = PreprocessParams(size=32, framing="metric", framing_face_m=0.16)
    export_model(Tiny(), tmp_path / "m", parity_count=8, parity_source="random", preprocess=metric)
    runtime = load_runtime(load_artifact(tmp_path / "m"), "onnxruntime")
    assert (runtime.preprocess.framing, runtime.preprocess.framing_face_m) == ("metric", 0.16)
    export_model(Tiny(), tmp_path / "d", parity_count=8, parity_source="random")
    assert load_runtime(load_artifact(tmp_path / "d"), "onnxruntime").preprocess.framing == "detector"


def test_int8_is_written_hashed_and_measured(tmp_path):
    torch.manual_seed(0)
    a = export_model(Tiny(), tmp_path, parity_count=8, parity_source="random", threshold=0.4)
    rng = np.random.default_rng(0)
    held = random_batch(32, 32, rng)
    labels = (load_runtime(a, device="cpu").infer(held).score >= 0.4).astype(int)
    a = add_int8(a, calibration=random_batch(32, 16, rng), held_out=(held, labels), force=True)
    ch = a.manifest["int8"]["accuracy_change"]
    gate = a.manifest["precision"]["int8"]
    assert ch["accuracy_float32"] == 1.0 and 0.0 <= ch["accuracy_int8"] <= 1.0
    assert gate["frame_sets"] == 32 and gate["threshold"] == pytest.approx(0.4) and "passed" in gate
    assert a.manifest["int8"]["tensorrt"] and "score head" in a.manifest["int8"]["format"]
    assert "model.int8.onnx" in load_artifact(tmp_path).manifest["files"]
    q = load_runtime(tmp_path, kind="onnxruntime", device="cpu", int8=True, force_precision=True)
    assert "int8" in q.reason
    diff = np.abs(q.infer(held).score - load_runtime(tmp_path, device="cpu").infer(held).score)
    assert diff.max() == pytest.approx(gate["score_abs_diff_max"], rel=0.01)
    # measured again and refused (a stricter gate): the earlier int8 model is no longer listed or used
    from edge_fas.runtime.precision import PrecisionRefused
    with pytest.raises(PrecisionRefused):
        add_int8(load_artifact(tmp_path), calibration=random_batch(32, 16, rng), held_out=(held, labels),
                 min_agreement=1.01)
    after = load_artifact(tmp_path)
    assert "int8" not in after.manifest and "model.int8.onnx" not in after.manifest["files"]
    assert after.manifest["precision"]["int8"]["passed"] is False
    with pytest.raises(EdgeFasError, match="its gate refused it"):
        load_runtime(tmp_path, kind="onnxruntime", device="cpu", int8=True, force_precision=True)


def test_bench_command_prints_table_and_json(tmp_path, capsys):
    torch.manual_seed(0)
    export_model(Tiny(), tmp_path, parity_count=4, parity_source="random")
    assert main(["bench", "--artifact", str(tmp_path), "--batch", "1,2", "--iters", "3", "--warmup", "1"]) == 0
    out = capsys.readouterr().out
    assert "machine: cpu=" in out and "p99 ms" in out and "onnxruntime" in out
    assert "skipped torch" in out or "torch" not in out.split("p99 ms")[1]  # no checkpoint -> torch not timed
    assert main(["bench", "--artifact", str(tmp_path), "--runtime", "onnxruntime", "--batch", "2",
                 "--iters", "2", "--warmup", "0", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)["results"]
    assert [r["batch"] for r in res] == [2] and res[0]["p50_ms"] > 0
    assert main(["bench", "--artifact", str(tmp_path), "--batch", "x"]) == 2


def test_parity_on_synthetic_rig_crops(tmp_path):
    pytest.importorskip("edge_fas.calibration").register_to_color
    torch.manual_seed(0)
    a = export_model(Tiny(), tmp_path, parity_count=3, parity_batch=3, parity_source="synthetic", gate_count=8)
    p = a.manifest["export"]["parity"]
    assert p["frame_sets"] == 3 and p["inputs"].startswith("synthetic rig crops")
