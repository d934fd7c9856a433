"""The TensorRT backend against the Python API of TensorRT 10.3 (JetPack 6.2), 10.16 and 11.1.

No TensorRT runs in CI, so edge_fas.runtime.trt is run against a stand-in module that has exactly
the classes, methods, properties and enum values NVIDIA's binding sources declare for each release
(tests/trt_api/tensorrt-*.txt, extracted by tests/trt_api/extract_api.py from the NVIDIA/TensorRT
tags v10.3.0, v10.16 and v11.1). A call that a release removed (TensorRT 11 dropped BuilderFlag.FP16,
platform_has_fast_fp16, the INT8 calibrators...) raises AttributeError here instead of on a board.
The same runs exercise the engine cache's trust checks and the engine-build gate end to end."""

import ast
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from edge_fas.errors import EdgeFasError
from edge_fas.export import export_model, random_batch
from edge_fas.runtime import cuda, load_runtime
from edge_fas.runtime import trt as trt_module
from edge_fas.runtime.cache import UntrustedCache
from test_runtime import Tiny

sys.path.insert(0, str(Path(__file__).parent / "trt_api"))
import fake_tensorrt as fake  # noqa: E402

VERSIONS = list(fake.VERSIONS)
FAKE_GPU = cuda.Gpu(0, "NVIDIA Orin (fake)", (8, 7), 8, 8 << 30)


@pytest.fixture(scope="module")
def tiny_artifact(tmp_path_factory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("trt_api_art")
    export_model(Tiny(trace=True), folder, threshold=0.5, parity_count=8, parity_source="random", overwrite=True)
    return folder


def install(monkeypatch, tmp_path, version, fail=frozenset(), names=None):
    """Make `import tensorrt` give the recorded API of `version`, on a fake GPU; a private cache."""
    trt = fake.make_module(version, names)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setattr(cuda, "probe", lambda: ((FAKE_GPU,), ""))
    monkeypatch.setattr(cuda, "Cuda", fake.FakeGpu)
    monkeypatch.setenv("EDGE_FAS_CACHE", str(tmp_path / "cache"))
    return trt


def gate_inputs(n=24, seed=4):
    return random_batch(32, n, np.random.default_rng(seed)), None, "random crops (test)"


def load(folder, **kw):
    kw.setdefault("gate_inputs", gate_inputs())
    return load_runtime(folder, kind="tensorrt", device="cuda:0", quiet=True, warmup=(), **kw)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_builds_gates_caches_and_infers_on_each_release(version, precision, tiny_artifact, tmp_path, monkeypatch):
    trt = install(monkeypatch, tmp_path, version)
    fake.io_of(tiny_artifact / "model.onnx")
    trt._behave = fake.default_behaviour(trt, fake.FAKE_IO)
    rt = load(tiny_artifact, precision=precision, max_batch=4)
    assert "built" in rt.reason and f"TensorRT {version} {precision}" in rt.reason
    assert "engine gate 100.00% agreement" in rt.reason, rt.reason
    # strongly typed on every release: the flag on 10.x, the only mode (flag 0) on 11.x
    flags = [a for a in trt._log if a == "NetworkDefinitionCreationFlag.STRONGLY_TYPED"]
    assert bool(flags) == version.startswith("10.")
    assert "IBuilderConfig.progress_monitor=" in trt._log and "IBuilderConfig.set_timing_cache" in trt._log
    b = random_batch(32, 6, np.random.default_rng(1))  # more than max_batch: split into engine-sized calls
    ref = load_runtime(tiny_artifact, kind="onnxruntime", device="cpu").infer(b).score
    np.testing.assert_allclose(rt.infer(b).score, ref, atol=2e-3 if precision == "fp16" else 1e-5)
    rt.close()
    again = load(tiny_artifact, precision=precision, max_batch=4)
    assert "loaded from the cache (sha256 verified)" in again.reason
    record = json.loads(next((tmp_path / "cache" / "engines" / "tensorrt").glob("*/record.json")).read_text())
    assert record["key"]["gpu"] == FAKE_GPU.name and record["key"]["sm_count"] == 8
    assert record["key"]["options"]["recipe"] == trt_module.RECIPE and record["gate"]["passed"]


@pytest.mark.parametrize("version", VERSIONS)
def test_parse_build_and_deserialise_failures_are_clear(version, tiny_artifact, tmp_path, monkeypatch):
    for fail, match in (("parse", "cannot parse.*fake parser error"), ("build", "failed to build"),
                        ("deserialize", "cannot deserialise")):
        trt = install(monkeypatch, tmp_path / fail, version)
        trt._behave = fake.default_behaviour(trt, fake.io_of(tiny_artifact / "model.onnx"), fail={fail})
        with pytest.raises(EdgeFasError, match=match):
            load(tiny_artifact, precision="fp32")


def test_a_removed_call_fails_here_not_on_the_board():
    """The stand-in really refuses what a release lacks (else the tests above prove nothing)."""
    old, new = fake.make_module("10.3.0"), fake.make_module("11.1.0")
    assert int(old.BuilderFlag.FP16) >= 0 and int(old.NetworkDefinitionCreationFlag.EXPLICIT_BATCH) >= 0
    for expr in ("trt.BuilderFlag.FP16", "trt.BuilderFlag.INT8", "trt.IInt8EntropyCalibrator2",
                 "trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH"):
        with pytest.raises(AttributeError, match="TensorRT 11.1.0 has no"):
            eval(expr, {"trt": new})
    builder = new.Builder(new.Logger(new.Logger.WARNING))
    with pytest.raises(AttributeError, match="Builder.platform_has_fast_fp16"):
        builder.platform_has_fast_fp16  # noqa: B018
    with pytest.raises(AttributeError, match="IBuilderConfig.int8_calibrator"):
        new.IBuilderConfig().int8_calibrator = object()


def _trt_chains(source: str) -> set[str]:
    """Every `trt.A.B...` attribute chain in the module source."""
    out = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute):
            parts, cur = [], node
            while isinstance(cur, ast.Attribute):
                parts.append(cur.attr)
                cur = cur.value
            if isinstance(cur, ast.Name) and cur.id == "trt":
                out.add(".".join(reversed(parts)))
    return out


def test_every_trt_name_in_the_backend_exists_in_every_supported_release():
    chains = _trt_chains(Path(trt_module.__file__).read_text())
    assert {"Builder", "OnnxParser", "BuilderFlag.TF32", "IProgressMonitor"} <= chains
    for version, filename in fake.VERSIONS.items():
        names = fake.load_names(filename)
        missing = sorted(c for c in chains if c not in names and c.split(".")[0] not in fake.DTYPES
                         and c != "__version__" and not c.startswith("IProgressMonitor.__init__"))
        assert not missing, f"TensorRT {version} lacks {missing}"


def test_version_range_is_enforced(monkeypatch, tmp_path):
    for v, ok in (("10.2.0", False), ("10.3.0", True), ("11.4.0", True), ("12.0.0", False), ("8.6.1", False)):
        mod = fake.make_module("10.3.0")
        type(mod).__version__ = v
        if ok:
            assert trt_module.check_supported(mod)
        else:
            with pytest.raises(EdgeFasError, match="outside the range"):
                trt_module.check_supported(mod)


# -- cache trust ---------------------------------------------------------------------------------

def _built(version, tiny_artifact, tmp_path, monkeypatch):
    trt = install(monkeypatch, tmp_path, version)
    trt._behave = fake.default_behaviour(trt, fake.io_of(tiny_artifact / "model.onnx"))
    load(tiny_artifact, precision="fp32").close()
    folder = next((tmp_path / "cache" / "engines" / "tensorrt").iterdir())
    return folder / "engine.plan"


@pytest.mark.parametrize("damage", ["truncated", "wrong-digest", "planted-no-record", "other-settings"])
def test_a_damaged_engine_is_quarantined_and_rebuilt(damage, tiny_artifact, tmp_path, monkeypatch):
    plan = _built("10.3.0", tiny_artifact, tmp_path, monkeypatch)
    record = plan.parent / "record.json"
    if damage == "truncated":
        plan.write_bytes(plan.read_bytes()[:10])
    elif damage == "wrong-digest":
        plan.write_bytes(plan.read_bytes()[:-1] + b"X")
    elif damage == "planted-no-record":
        record.unlink()
        plan.write_bytes(b"PLAN:attacker's engine")
    else:
        r = json.loads(record.read_text())
        r["key"]["onnx_sha256"] = "0" * 64
        record.write_text(json.dumps(r))
    rt = load(tiny_artifact, precision="fp32")
    assert "built (cached engine refused" in rt.reason and "quarantine" in rt.reason
    quarantined = list((tmp_path / "cache" / "quarantine").iterdir())
    assert len(quarantined) == 1 and (quarantined[0] / "REASON.txt").is_file()
    assert "loaded from the cache" in load(tiny_artifact, precision="fp32").reason  # the rebuilt one is trusted


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_an_engine_owned_by_another_user_is_refused(tiny_artifact, tmp_path, monkeypatch):
    plan = _built("11.1.0", tiny_artifact, tmp_path, monkeypatch)
    os.chown(plan, 4242, 4242)
    with pytest.raises(UntrustedCache, match="belongs to uid 4242"):
        load(tiny_artifact, precision="fp32")


def test_a_group_writable_engine_or_cache_folder_is_refused(tiny_artifact, tmp_path, monkeypatch):
    plan = _built("10.16.1", tiny_artifact, tmp_path, monkeypatch)
    plan.chmod(0o664)
    with pytest.raises(UntrustedCache, match="writable by group or others"):
        load(tiny_artifact, precision="fp32")
    plan.chmod(0o600)
    plan.parent.parent.chmod(0o777)
    with pytest.raises(UntrustedCache, match="engine cache folder"):
        load(tiny_artifact, precision="fp32")


def test_a_symlinked_engine_is_refused(tiny_artifact, tmp_path, monkeypatch):
    plan = _built("10.3.0", tiny_artifact, tmp_path, monkeypatch)
    target = tmp_path / "elsewhere.plan"
    target.write_bytes(plan.read_bytes())
    plan.unlink()
    plan.symlink_to(target)
    with pytest.raises(UntrustedCache, match="symbolic link"):
        load(tiny_artifact, precision="fp32")
