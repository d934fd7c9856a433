"""torch runtime on CUDA: eager, half precision and a captured CUDA graph agree with ONNX Runtime on
CPU (skipped without a CUDA GPU)."""

import numpy as np
import pytest
import torch

from edge_fas.export import export_model, random_batch
from edge_fas.runtime import load_runtime
from test_runtime import Tiny

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_cuda_eager_half_and_graph_match_cpu(tmp_path):
    torch.manual_seed(0)
    model = Tiny(trace=True)
    export_model(model, tmp_path, parity_count=8, parity_source="random")
    b = random_batch(32, 4, np.random.default_rng(0))
    ref = load_runtime(tmp_path, kind="onnxruntime", device="cpu").infer(b).score
    eager = load_runtime(tmp_path, kind="torch", device="cuda", model=_copy(model))
    np.testing.assert_allclose(eager.infer(b).score, ref, atol=1e-4)
    half = load_runtime(tmp_path, kind="torch", device="cuda", model=_copy(model), half=True)
    np.testing.assert_allclose(half.infer(b).score, ref, atol=5e-3)
    graph = load_runtime(tmp_path, kind="torch", device="cuda", model=_copy(model), cuda_graph_batch=4)
    first = graph.infer(b).score
    b2 = random_batch(32, 4, np.random.default_rng(1))  # replay must see the new inputs
    ref2 = load_runtime(tmp_path, kind="onnxruntime", device="cpu").infer(b2).score
    np.testing.assert_allclose(first, ref, atol=1e-4)
    np.testing.assert_allclose(graph.infer(b2).score, ref2, atol=1e-4)
    assert graph.infer(random_batch(32, 3, np.random.default_rng(2))).score.shape == (3,)  # other size: eager
    assert graph.graph is not None and "CUDA graph" in graph.reason


def _copy(model):
    m = Tiny(trace=True)
    m.load_state_dict(model.state_dict())
    return m
