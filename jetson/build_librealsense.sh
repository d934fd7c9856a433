#!/usr/bin/env bash
# Build librealsense with its Python bindings for the given interpreter (JetPack 6 has no kernel
# patches for the RSUSB back end to need: FORCE_RSUSB_BACKEND avoids patching the L4T kernel).
# Usage: ./build_librealsense.sh /opt/edge-fas/venv/bin/python [VERSION]
set -euo pipefail
PY="${1:?usage: build_librealsense.sh PYTHON [VERSION]}"
VERSION="${2:-v2.56.3}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
git clone --depth 1 --branch "$VERSION" https://github.com/IntelRealSense/librealsense "$WORK/src"
cmake -S "$WORK/src" -B "$WORK/build" -DCMAKE_BUILD_TYPE=Release -DBUILD_PYTHON_BINDINGS=ON \
  -DPYTHON_EXECUTABLE="$PY" -DFORCE_RSUSB_BACKEND=ON -DBUILD_WITH_CUDA=ON -DBUILD_EXAMPLES=OFF \
  -DBUILD_GRAPHICAL_EXAMPLES=OFF
cmake --build "$WORK/build" -j"$(nproc)"
cmake --install "$WORK/build"
SITE="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["platlib"])')"
cp "$WORK"/build/Release/pyrealsense2*.so "$WORK"/build/Release/pybackend2*.so "$SITE"/ 2>/dev/null \
  || cp "$WORK"/build/wrappers/python/pyrealsense2*.so "$SITE"/
"$PY" -c 'import pyrealsense2 as rs; print("pyrealsense2", rs.__version__)'
