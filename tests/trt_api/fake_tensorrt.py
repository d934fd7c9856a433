"""A stand-in `tensorrt` module that has exactly the Python API of one recorded TensorRT release.

No TensorRT or GPU runs in CI, so the TensorRT backend is run against this: every attribute it reads,
calls or sets on a TensorRT object must be in the release's recorded API list (tests/trt_api/
tensorrt-*.txt, extracted from NVIDIA's binding sources), or AttributeError names it. The "GPU" is a
numpy buffer per allocation, and execute_async_v3 runs the engine's ONNX file on ONNX Runtime's CPU,
so build, gate, cache and inference are exercised end to end.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
VERSIONS = {"10.3.0": "tensorrt-10.3.txt", "10.16.1": "tensorrt-10.16.txt", "11.1.0": "tensorrt-11.1.txt"}


def load_names(filename: str) -> set[str]:
    return {ln.strip() for ln in (HERE / filename).read_text().splitlines() if ln.strip() and not ln.startswith("#")}


class EnumValue:
    def __init__(self, owner: str, name: str, value: int):
        self.owner, self.name, self.value = owner, name, value

    def __int__(self):
        return self.value

    def __eq__(self, other):
        return isinstance(other, EnumValue) and (self.owner, self.name) == (other.owner, other.name)

    def __hash__(self):
        return hash((self.owner, self.name))

    def __repr__(self):
        return f"{self.owner}.{self.name}"


def make_module(version: str, names: set[str] | None = None):
    names = names if names is not None else load_names(VERSIONS[version])
    log: list[str] = []
    module_names = {n for n in names if "." not in n}

    class Meta(type):
        def __getattr__(cls, attr):
            full = f"{cls._trt_name}.{attr}"
            if full not in names:
                raise AttributeError(f"TensorRT {version} has no {full}")
            log.append(full)
            return EnumValue(cls._trt_name, attr, sorted(n for n in names if n.startswith(cls._trt_name + ".")).index(full))

    class Checked(metaclass=Meta):
        _trt_name = "?"

        def __init__(self, *args, **kwargs):
            object.__setattr__(self, "_state", {"args": args})
            log.append(f"{self._trt_name}()")

        def __getattr__(self, attr):
            if attr.startswith("__"):
                raise AttributeError(attr)
            full = f"{self._trt_name}.{attr}"
            if full not in names:
                raise AttributeError(f"TensorRT {version} has no {full}")
            log.append(full)
            return mod._behave(self, attr)

        def __setattr__(self, attr, value):
            full = f"{self._trt_name}.{attr}"
            if full not in names and "_fake_base" in type(self).__dict__:  # Python subclasses keep own attributes
                raise AttributeError(f"TensorRT {version} has no settable {full}")
            log.append(f"{full}=")
            object.__setattr__(self, attr, value)

    class Module:
        __version__ = version

        def __getattr__(self, attr):
            if attr not in module_names:
                raise AttributeError(f"TensorRT {version} has no tensorrt.{attr}")
            log.append(attr)
            if attr not in classes:
                classes[attr] = (EnumValue("tensorrt", attr, len(classes)) if attr in DTYPES
                                 else Meta(attr, (Checked,), {"_trt_name": attr, "_fake_base": True}))
            return classes[attr]

    classes: dict[str, object] = {}
    mod = Module()
    mod._log = log
    mod._behave = None  # set by the test: default_behaviour(mod, ...)
    return mod


DTYPES = {"float32", "float16", "bfloat16", "int8", "int32", "int64", "bool", "uint8", "fp8", "int4", "fp4"}


class FakeGpu:
    """'Device memory' is host memory here; the engine runs its ONNX file on ONNX Runtime's CPU."""

    def __init__(self, device_index: int = 0):
        self.buffers: dict[int, np.ndarray] = {}
        self.streams = 0

    def malloc(self, nbytes):
        buf = np.zeros(max(1, nbytes), np.uint8)
        self.buffers[buf.ctypes.data] = buf
        return buf.ctypes.data

    def free(self, ptr):
        self.buffers.pop(ptr)

    def pinned(self, shape, dtype):
        arr = np.zeros(shape, dtype)
        self.buffers[arr.ctypes.data] = arr
        return arr, arr.ctypes.data

    def free_host(self, ptr):
        self.buffers.pop(ptr)

    def stream(self):
        self.streams += 1
        return self.streams

    def to_device(self, dst, src, nbytes, stream):
        ctypes.memmove(dst, src, nbytes)

    def to_host(self, dst, src, nbytes, stream):
        ctypes.memmove(dst, src, nbytes)

    def sync(self, stream):
        pass

    def destroy(self, stream):
        pass


def default_behaviour(trt, onnx_outputs: dict, fail: set[str] = frozenset()):
    """What each TensorRT call returns in the fake, keyed by 'Class.member'."""
    import onnxruntime as ort

    def behave(obj, attr):
        st = obj._state
        key = f"{obj._trt_name}.{attr}"
        new = lambda cls, **kw: _instance(trt, cls, **kw)  # noqa: E731
        table = {
            "Builder.create_network": lambda flags=0: new("INetworkDefinition", flags=flags),
            "Builder.create_builder_config": lambda: new("IBuilderConfig"),
            "Builder.create_optimization_profile": lambda: new("IOptimizationProfile"),
            "Builder.build_serialized_network": lambda network, config: _build(network, config, fail),
            "OnnxParser.parse": lambda data: st.update(ok="parse" not in fail) or
            st["args"][0]._state.update(onnx=bytes(data)) or st["ok"],
            "OnnxParser.get_error": lambda i: "fake parser error: unsupported node",
            "IBuilderConfig.set_memory_pool_limit": lambda pool, size: None,
            "IBuilderConfig.clear_flag": lambda flag: None,
            "IBuilderConfig.set_flag": lambda flag: None,
            "IBuilderConfig.create_timing_cache": lambda data: new("ITimingCache"),
            "IBuilderConfig.set_timing_cache": lambda cache, ignore_mismatch: True,
            "IBuilderConfig.get_timing_cache": lambda: new("ITimingCache"),
            "IBuilderConfig.add_optimization_profile": lambda profile: 0,
            "ITimingCache.serialize": lambda: b"timing",
            "IOptimizationProfile.set_shape": lambda name, lo, opt, hi: st.setdefault("shapes", {}).update({name: hi}),
            "Runtime.deserialize_cuda_engine": lambda plan: (
                None if "deserialize" in fail or not bytes(plan).startswith(b"PLAN:") else
                new("ICudaEngine", onnx=bytes(plan)[5:])),
        }
        if key == "OnnxParser.num_errors":
            return 0 if st.get("ok") else 1
        if key in table:
            return table[key]
        if obj._trt_name == "ICudaEngine":
            return _engine(trt, obj, attr, onnx_outputs)
        if obj._trt_name == "IExecutionContext":
            return _context(trt, obj, attr, ort)
        raise AssertionError(f"the fake has no behaviour for {key}: add it to tests/trt_api/fake_tensorrt.py")

    return behave


def _build(network, config, fail):
    monitor = config.__dict__.get("progress_monitor")
    if monitor is not None:  # what TensorRT does with a progress monitor during a build
        monitor.phase_start("Building engine", None, 2)
        assert monitor.step_complete("Building engine", 0) is True
        monitor.phase_finish("Building engine")
    return None if "build" in fail else b"PLAN:" + network._state["onnx"]


def _instance(trt, cls, **state):
    obj = getattr(trt, cls)()
    obj._state.update(state)
    return obj


IO = ("rgb", "depth", "ir", "present")


def _engine(trt, obj, attr, onnx_outputs):
    names = list(IO) + onnx_outputs["names"]
    if attr == "num_io_tensors":
        return len(names)
    if attr == "get_tensor_name":
        return lambda i: names[i]
    if attr == "get_tensor_mode":
        return lambda n: trt.TensorIOMode.INPUT if n in IO else trt.TensorIOMode.OUTPUT
    if attr == "get_tensor_shape":
        return lambda n: (-1, *onnx_outputs["tails"][n])
    if attr == "get_tensor_dtype":
        return lambda n: trt.float32
    if attr == "create_execution_context":
        return lambda: _instance(trt, "IExecutionContext", engine=obj)
    raise AssertionError(f"the fake has no behaviour for ICudaEngine.{attr}")


def _context(trt, obj, attr, ort):
    st = obj._state
    eng = st["engine"]._state
    tails = st.setdefault("tails", dict(FAKE_IO["tails"]))
    if attr == "set_input_shape":
        def set_shape(name, shape):
            st.setdefault("shapes", {})[name] = tuple(shape)
            return True
        return set_shape
    if attr == "get_tensor_shape":
        def shape(name):
            b = st["shapes"]["rgb"][0]
            return (b, *tails[name])
        return shape
    if attr == "set_tensor_address":
        return lambda name, ptr: st.setdefault("addr", {}).update({name: ptr}) or True
    if attr == "execute_async_v3":
        def run(stream_handle):
            assert isinstance(stream_handle, int)
            b = st["shapes"]["rgb"][0]
            feed = {}
            for n in IO:
                a = np.zeros((b, *tails[n]), np.float32)
                ctypes.memmove(a.ctypes.data, st["addr"][n], a.nbytes)
                feed[n] = a
            if "session" not in eng:
                eng["session"] = ort.InferenceSession(eng["onnx"], providers=["CPUExecutionProvider"])
            outs = eng["session"].run(FAKE_IO["names"], feed)
            for n, a in zip(FAKE_IO["names"], outs):
                a = np.ascontiguousarray(a, np.float32)
                ctypes.memmove(st["addr"][n], a.ctypes.data, a.nbytes)
            return True
        return run
    raise AssertionError(f"the fake has no behaviour for IExecutionContext.{attr}")


FAKE_IO: dict = {}


def io_of(onnx_path) -> dict:
    """Output names and per-sample shapes of an ONNX model (what a real engine reports)."""
    import onnxruntime as ort
    s = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    tails = {i.name: tuple(i.shape[1:]) for i in s.get_inputs()}
    tails.update({o.name: tuple(o.shape[1:]) for o in s.get_outputs()})
    FAKE_IO.update(names=[o.name for o in s.get_outputs()], tails=tails)
    return FAKE_IO
