"""The NVIDIA GPU without PyTorch: discovery through the driver, buffers through cuda-python.

The project pins a CPU build of torch, so neither GPU detection nor the TensorRT buffers may depend
on torch having CUDA. `gpus()` asks the CUDA driver itself (libcuda, which every NVIDIA driver and
every JetPack installs) for each device's name, compute capability, SM count and memory: enough for
`auto` to choose and for the engine key. The TensorRT runtime's device memory, pinned host memory
and stream come from cuda-python (NVIDIA's bindings, the `tensorrt` extra), the API NVIDIA's own
TensorRT samples use.
"""

from __future__ import annotations

import ctypes
import functools
from dataclasses import dataclass

import numpy as np

from edge_fas.errors import EdgeFasError

LIBCUDA = ("libcuda.so.1", "libcuda.so")
# CUdevice_attribute values from cuda.h (stable since CUDA 2.x / 5.x)
_ATTR_SM_COUNT, _ATTR_CC_MAJOR, _ATTR_CC_MINOR = 16, 75, 76


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    capability: tuple[int, int]
    sm_count: int
    memory_bytes: int

    @property
    def sm(self) -> str:
        return f"sm{self.capability[0]}{self.capability[1]}"


def _load_driver():
    last = None
    for name in LIBCUDA:
        try:
            return ctypes.CDLL(name)
        except OSError as e:
            last = e
    raise OSError(f"no NVIDIA driver library ({' / '.join(LIBCUDA)}): {last}")


@functools.lru_cache(maxsize=1)
def probe() -> tuple[tuple[Gpu, ...], str]:
    """(GPUs, '') or ((), why none). Cached: the driver's answer does not change within a process."""
    try:
        lib = _load_driver()
    except OSError as e:
        return (), str(e)
    rc = lib.cuInit(0)
    if rc != 0:
        return (), f"the NVIDIA driver is installed but cuInit failed (CUresult {rc}): no usable GPU or driver mismatch"
    count = ctypes.c_int()
    if lib.cuDeviceGetCount(ctypes.byref(count)) != 0 or count.value == 0:
        return (), "the NVIDIA driver sees no CUDA device"
    out = []
    for i in range(count.value):
        dev = ctypes.c_int()
        lib.cuDeviceGet(ctypes.byref(dev), i)
        name = ctypes.create_string_buffer(256)
        lib.cuDeviceGetName(name, 256, dev)
        vals = []
        for attr in (_ATTR_CC_MAJOR, _ATTR_CC_MINOR, _ATTR_SM_COUNT):
            v = ctypes.c_int()
            lib.cuDeviceGetAttribute(ctypes.byref(v), attr, dev)
            vals.append(v.value)
        mem = ctypes.c_size_t()
        fn = getattr(lib, "cuDeviceTotalMem_v2", None) or lib.cuDeviceTotalMem
        fn(ctypes.byref(mem), dev)
        out.append(Gpu(i, name.value.decode(errors="replace"), (vals[0], vals[1]), vals[2], mem.value))
    return tuple(out), ""


def gpus() -> tuple[Gpu, ...]:
    return probe()[0]


def gpu(index: int = 0) -> Gpu:
    found, why = probe()
    if index >= len(found):
        raise EdgeFasError(f"CUDA device {index} asked for, but " + (why or f"only {len(found)} GPU(s) are visible"))
    return found[index]


def device_index(device: str) -> int:
    if device in ("cuda", "auto"):
        return 0
    if device.startswith("cuda:") and device[5:].isdigit():
        return int(device[5:])
    raise EdgeFasError(f"device {device!r} is not one of auto, cuda, cuda:N")


# ---------------------------------------------------------------------------------------------
# cuda-python: device buffers, pinned staging, a stream

def import_cudart():
    """cuda-python's runtime module: cuda.bindings.runtime (12.6.1+ and 13), else cuda.cudart (older 12.x)."""
    try:
        from cuda.bindings import runtime
        return runtime
    except ImportError:
        pass
    try:
        from cuda import cudart
        return cudart
    except ImportError as e:
        raise EdgeFasError("the TensorRT runtime needs cuda-python for its GPU buffers: "
                           "pip install 'edge-fas[tensorrt]' (cuda-python 12.x for CUDA 12)") from e


class Cuda:
    """The few runtime calls the TensorRT backend needs, each checked."""

    def __init__(self, device_index: int = 0):
        self.rt = import_cudart()
        self.call("cudaSetDevice", device_index)

    def call(self, name: str, *args):
        res = getattr(self.rt, name)(*args)
        err, rest = res[0], res[1:]
        if int(err) != 0:
            try:
                label = self.rt.cudaGetErrorName(err)[1]
                label = label.decode() if isinstance(label, bytes) else str(label)
            except Exception:  # noqa: BLE001 - the name is only for the message
                label = str(err)
            hint = " (no NVIDIA driver or GPU usable here)" if "Driver" in label or "NoDevice" in label else ""
            raise EdgeFasError(f"CUDA {name} failed: {label}{hint}")
        return rest[0] if len(rest) == 1 else (rest or None)

    def malloc(self, nbytes: int) -> int:
        return int(self.call("cudaMalloc", max(1, nbytes)))

    def free(self, ptr: int) -> None:
        self.call("cudaFree", ptr)

    def pinned(self, shape, dtype) -> tuple[np.ndarray, int]:
        """A numpy array over page-locked host memory (fast, truly asynchronous copies) and its pointer."""
        dtype = np.dtype(dtype)
        nbytes = max(1, int(np.prod(shape)) * dtype.itemsize)
        ptr = int(self.call("cudaMallocHost", nbytes))
        buf = (ctypes.c_byte * nbytes).from_address(ptr)
        return np.frombuffer(buf, dtype=dtype, count=int(np.prod(shape))).reshape(shape), ptr

    def free_host(self, ptr: int) -> None:
        self.call("cudaFreeHost", ptr)

    def stream(self):
        return self.call("cudaStreamCreate")

    def to_device(self, dst: int, src_ptr: int, nbytes: int, stream) -> None:
        self.call("cudaMemcpyAsync", dst, src_ptr, nbytes, self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice, stream)

    def to_host(self, dst_ptr: int, src: int, nbytes: int, stream) -> None:
        self.call("cudaMemcpyAsync", dst_ptr, src, nbytes, self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost, stream)

    def sync(self, stream) -> None:
        self.call("cudaStreamSynchronize", stream)

    def destroy(self, stream) -> None:
        self.call("cudaStreamDestroy", stream)
