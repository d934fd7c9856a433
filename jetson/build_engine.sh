#!/usr/bin/env bash
# Build (or verify) the TensorRT engine for this Jetson ahead of time, as the service user and into the
# service's cache, so the service's first start is fast; then time it. The engine is keyed by the ONNX
# hash, TensorRT version, GPU model and SM count, build options and precision, and its sha256 is checked
# before every load; run this again after a JetPack upgrade. Each precision passes the engine-build gate
# (decision agreement with fp32 on held-out inputs) or is refused.
# Usage: sudo ./build_engine.sh [ARTIFACT] [--int8] [--fp32]   (ARTIFACT: folder, default the bundled demo)
set -euo pipefail
ARTIFACT=demo
VARIANTS=(--runtime tensorrt)
for arg in "$@"; do
  case "$arg" in
    --int8) VARIANTS=(--runtime tensorrt-int8) ;;
    --fp32) VARIANTS=(--runtime tensorrt-fp32) ;;
    -h|--help) sed -n 2,7p "$0"; exit 0 ;;
    -*) echo "build_engine.sh: unknown option $arg (see --help)" >&2; exit 2 ;;
    *) ARTIFACT="$arg" ;;
  esac
done
EDGE_FAS="${EDGE_FAS:-/opt/edge-fas/venv/bin/edge-fas}"
SERVICE_USER="${SERVICE_USER:-edge-fas}"
CACHE="${EDGE_FAS_CACHE:-/var/lib/edge-fas/cache}"
run_as_service() {
  if [ "$(id -un)" = "$SERVICE_USER" ]; then
    EDGE_FAS_CACHE="$CACHE" "$@"
  else
    sudo -u "$SERVICE_USER" EDGE_FAS_CACHE="$CACHE" "$@"
  fi
}
run_as_service "$EDGE_FAS" bench --artifact "$ARTIFACT" "${VARIANTS[@]}" --batch 1 --iters 200 --warmup 20
# for comparison: the ONNX Runtime TensorRT provider and torch with CUDA graphs, where installed
run_as_service "$EDGE_FAS" bench --artifact "$ARTIFACT" --runtime onnxruntime-trt --runtime torch-cuda-graph-half \
  --batch 1 --iters 100 --warmup 10 || echo "build_engine.sh: comparison runtimes not available (see above)" >&2
