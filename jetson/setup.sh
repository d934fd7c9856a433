#!/usr/bin/env bash
# Install edge-fas on a Jetson running JetPack 6 (L4T r36, Ubuntu 22.04, Python 3.10).
# Usage: sudo ./setup.sh [--realsense-from-source] [--user USER]
#   Installs system packages; from the Jetson AI Lab JetPack 6 index (CUDA 12.6) the CUDA builds of
#   PyTorch and onnxruntime-gpu (PyPI has no Jetson CUDA build of either: with PyPI in reach, pip
#   picks its CPU-only aarch64 torch and `auto` silently runs on the CPU, so the index is the only
#   one used for them); pyrealsense2; and edge-fas with TensorRT from JetPack's python3-libnvinfer
#   (10.3 on JetPack 6.2) into /opt/edge-fas/venv. Ends by checking that torch sees CUDA and that
#   TensorRT loads; it fails loudly otherwise.
#   Override the pins with TORCH_VERSION=... ORT_VERSION=... JETSON_INDEX=... when NVIDIA moves them.
set -euo pipefail

REALSENSE_FROM_SOURCE=0
RUN_USER="${SUDO_USER:-$(id -un)}"
while [ $# -gt 0 ]; do
  case "$1" in
    --realsense-from-source) REALSENSE_FROM_SOURCE=1 ;;
    --user) RUN_USER="$2"; shift ;;
    -h|--help) sed -n 2,6p "$0"; exit 0 ;;
    *) echo "setup.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

if [ "$(id -u)" -ne 0 ]; then
  echo "setup.sh: run with sudo (it installs system packages)" >&2; exit 1
fi
if ! grep -q "R36" /etc/nv_tegra_release 2>/dev/null; then
  echo "setup.sh: warning: this does not look like JetPack 6 (L4T R36); continuing" >&2
fi

REPO_DIR="$(cd "$(dirname "$0")/.." && pwd)"
PREFIX=/opt/edge-fas
# The Jetson AI Lab index for JetPack 6 / CUDA 12.6 (it moved from .dev to .io; it also mirrors PyPI)
JETSON_INDEX="${JETSON_INDEX:-https://pypi.jetson-ai-lab.io/jp6/cu126}"
TORCH_VERSION="${TORCH_VERSION:-2.8.0}"
ORT_VERSION="${ORT_VERSION:-1.23.0}"
CUDA_PYTHON_VERSION="${CUDA_PYTHON_VERSION:-12.6.2.post1}"

apt-get update
apt-get install -y --no-install-recommends \
  python3-venv python3-dev python3-pip build-essential cmake git \
  libopenblas-dev libjpeg-dev libusb-1.0-0-dev libudev-dev pkg-config \
  python3-libnvinfer python3-libnvinfer-dev libgl1 libegl1 libgles2 libxkbcommon-x11-0 \
  libxcb-cursor0 unclutter

# system-site-packages: the venv sees JetPack's tensorrt module (python3-libnvinfer)
python3 -m venv --system-site-packages "$PREFIX/venv"
PIP="$PREFIX/venv/bin/pip"
"$PIP" install --upgrade pip wheel
# --index-url, not --extra-index-url: with PyPI beside it pip may prefer PyPI's CPU-only aarch64 torch
"$PIP" install --index-url "$JETSON_INDEX" "torch==$TORCH_VERSION" "onnxruntime-gpu==$ORT_VERSION" \
  || { echo "setup.sh: torch $TORCH_VERSION / onnxruntime-gpu $ORT_VERSION not found on $JETSON_INDEX;" \
            "set TORCH_VERSION / ORT_VERSION to versions it lists" >&2; exit 1; }
# edge-fas itself: ONNX Runtime is already the GPU build (no [cpu] extra, which would overwrite it);
# TensorRT is JetPack's (system site packages), so only its helpers: cuda-python and onnx
"$PIP" install "$REPO_DIR" "cuda-python==$CUDA_PYTHON_VERSION" "onnx>=1.15"

if [ "$REALSENSE_FROM_SOURCE" = 1 ]; then
  "$REPO_DIR/jetson/build_librealsense.sh" "$PREFIX/venv/bin/python"
else
  # aarch64 wheels of pyrealsense2 exist for recent releases; fall back to --realsense-from-source
  "$PIP" install pyrealsense2 || echo "setup.sh: no pyrealsense2 wheel; rerun with --realsense-from-source" >&2
fi

# udev rules so the service user can open the cameras without root
install -m 0644 "$REPO_DIR/jetson/99-edge-fas-cameras.rules" /etc/udev/rules.d/
udevadm control --reload-rules && udevadm trigger

# the service runs as the unprivileged system user edge-fas; the kiosk user needs the same groups
id edge-fas >/dev/null 2>&1 || useradd --system --user-group --no-create-home --shell /usr/sbin/nologin edge-fas
usermod -aG video,plugdev edge-fas
id "$RUN_USER" >/dev/null 2>&1 && usermod -aG video,plugdev "$RUN_USER"
mkdir -p /etc/edge-fas
[ -f /etc/edge-fas/config.yaml ] || install -m 0644 "$REPO_DIR/jetson/config.yaml" /etc/edge-fas/config.yaml
# the service's state (engine cache) belongs to it alone; nothing root later trusts is kept there
install -d -m 0700 -o edge-fas -g edge-fas /var/lib/edge-fas /var/lib/edge-fas/cache
install -d /opt/edge-fas/jetson && install -m 0644 "$REPO_DIR/jetson/README.md" /opt/edge-fas/jetson/

# the checks that make a first run work: CUDA torch, TensorRT loads, ONNX Runtime has its GPU providers
"$PREFIX/venv/bin/python" - <<'PY'
import sys
import torch
if not torch.cuda.is_available():
    sys.exit(f"setup.sh: torch {torch.__version__} does not see CUDA: it is not the JetPack build; "
             "reinstall it from the Jetson index (see the top of setup.sh)")
import onnxruntime
if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
    sys.exit(f"setup.sh: onnxruntime {onnxruntime.__version__} has no CUDA provider: another onnxruntime "
             "wheel overwrote onnxruntime-gpu; pip uninstall -y onnxruntime onnxruntime-gpu, then rerun")
from edge_fas.runtime import tensorrt_status
ok, line = tensorrt_status()
if not ok:
    sys.exit(f"setup.sh: {line}")
print(f"setup.sh: torch {torch.__version__} with CUDA, onnxruntime {onnxruntime.__version__} with CUDA, {line}")
PY
"$PREFIX/venv/bin/edge-fas" doctor
echo "setup.sh: done. Next: sudo ./power.sh max; sudo ./build_engine.sh; sudo ./install_service.sh"
