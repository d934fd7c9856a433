"""The bundled demo artifact: present, verified, says it is synthetic-only, and runs on CPU."""

import numpy as np
import pytest

from edge_fas.export import random_batch
from edge_fas.runtime import default_artifact, load_artifact, load_runtime


def test_demo_artifact_loads_and_runs_on_cpu():
    folder = default_artifact()
    art = load_artifact("demo")
    assert art.folder == folder
    assert "synthetic data only" in art.manifest["training"]["summary"]
    assert 0.0 < art.threshold < 1.0 and "validation" in art.manifest["threshold"]["split"]
    rt = load_runtime("demo", device="cpu", threads=1)
    assert rt.kind == "onnxruntime" and rt.preprocess.size == art.input_size
    out = rt.infer(random_batch(art.input_size, 2, np.random.default_rng(0)))
    assert out.score.shape == (2,) and np.all((out.score >= 0) & (out.score <= 1))


def test_demo_int8_accuracy_change_is_recorded():
    q = load_artifact("demo").manifest.get("int8")
    if q is None:
        pytest.skip("the demo artifact was exported without --int8")
    ch = q["accuracy_change"]
    assert ch["held_out_frame_sets"] > 0 and 0.0 <= ch["decision_agreement"] <= 1.0
