#!/usr/bin/env bash
# Build the TensorRT engine for this Jetson ahead of time (the first start is then fast), and
# benchmark it. The engine is cached under ~/.cache/edge-fas/engines, keyed by the ONNX hash,
# the TensorRT version and this GPU's compute capability; run it again after a JetPack upgrade.
# Usage: ./build_engine.sh [ARTIFACT] [--int8]   (ARTIFACT: folder, default the bundled demo)
set -euo pipefail
ARTIFACT="${1:-demo}"
EDGE_FAS="${EDGE_FAS:-/opt/edge-fas/venv/bin/edge-fas}"
"$EDGE_FAS" bench --artifact "$ARTIFACT" --runtime tensorrt --batch 1 --iters 200 --warmup 20
"$EDGE_FAS" bench --artifact "$ARTIFACT" --runtime onnxruntime-trt --runtime torch-cuda-graph-half \
  --batch 1 --iters 100 --warmup 10 || true
