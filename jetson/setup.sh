#!/usr/bin/env bash
# Install edge-fas on a Jetson running JetPack 6 (L4T r36, Ubuntu 22.04, Python 3.10).
# Usage: sudo ./setup.sh [--realsense-from-source] [--user USER]
#   Installs system packages, NVIDIA's PyTorch wheel for JetPack 6, pyrealsense2, and edge-fas
#   (with TensorRT from JetPack's python3-libnvinfer) into /opt/edge-fas/venv.
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
# NVIDIA's PyTorch wheel index for JetPack 6 (see the README for the pinned version and alternatives)
TORCH_INDEX="${TORCH_INDEX:-https://pypi.jetson-ai-lab.dev/jp6/cu126}"

apt-get update
apt-get install -y --no-install-recommends \
  python3-venv python3-dev python3-pip build-essential cmake git \
  libopenblas-dev libjpeg-dev libusb-1.0-0-dev libudev-dev pkg-config \
  python3-libnvinfer python3-libnvinfer-dev libgl1 libegl1 libxkbcommon-x11-0 \
  libxcb-cursor0 unclutter

# system-site-packages: the venv sees JetPack's tensorrt module (python3-libnvinfer)
python3 -m venv --system-site-packages "$PREFIX/venv"
PIP="$PREFIX/venv/bin/pip"
"$PIP" install --upgrade pip wheel
"$PIP" install --extra-index-url "$TORCH_INDEX" torch onnxruntime-gpu
"$PIP" install "$REPO_DIR"

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
id edge-fas >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin edge-fas
usermod -aG video,plugdev edge-fas
id "$RUN_USER" >/dev/null 2>&1 && usermod -aG video,plugdev "$RUN_USER"
mkdir -p /etc/edge-fas /var/lib/edge-fas
[ -f /etc/edge-fas/config.yaml ] || install -m 0644 "$REPO_DIR/jetson/config.yaml" /etc/edge-fas/config.yaml
chown -R edge-fas /var/lib/edge-fas
install -d /opt/edge-fas/jetson && install -m 0644 "$REPO_DIR/jetson/README.md" /opt/edge-fas/jetson/

"$PREFIX/venv/bin/edge-fas" doctor || true
echo "setup.sh: done. Next: sudo ./power.sh max; ./build_engine.sh; sudo ./install_service.sh"
