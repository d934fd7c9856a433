# One-command set-up for a fresh Debian/Ubuntu machine. Every step leaves a stamp in .stamps/,
# so running `make demo` or `make test` twice does not redo the work.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMPS := .stamps

# Debian packages: librealsense's USB backend, OpenNI2 with its Dummy device, what Qt's xcb and
# offscreen platforms load, a virtual X server for screenshots, and shellcheck for jetson/*.sh.
APT_PACKAGES := libusb-1.0-0 libopenni2-0 xvfb xauth libgl1 libegl1 libgles2 libglib2.0-0 libdbus-1-3 \
	libfontconfig1 libxkbcommon0 libxkbcommon-x11-0 libxcb-cursor0 libxcb-icccm4 libxcb-image0 \
	libxcb-keysyms1 libxcb-randr0 libxcb-render-util0 libxcb-shape0 libxcb-xinerama0 libxcb-xkb1 \
	shellcheck

.PHONY: demo test setup system-packages clean gpu-check

# The built-in synthetic rig: with the GUI when there is a display, one JSON line per verdict otherwise.
demo: setup
	@if [ -n "$$DISPLAY$$WAYLAND_DISPLAY" ]; then \
	  $(VENV)/bin/edge-fas run --camera synthetic; \
	else \
	  echo "No display: running the demo headless (set DISPLAY for the GUI)."; \
	  $(VENV)/bin/edge-fas run --camera synthetic --headless --max-frames 300; \
	fi

test: setup
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q

setup: $(STAMPS)/install

system-packages: $(STAMPS)/apt

$(STAMPS)/apt: Makefile
	@mkdir -p $(STAMPS)
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  if ! command -v apt-get >/dev/null; then \
	    echo "error: these system libraries are missing and apt-get is not available:"; \
	    echo "  $$missing"; \
	    echo "Install their equivalents with your package manager, then run make again."; exit 1; \
	  fi; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  echo "Installing Debian packages: $$missing"; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	@touch $@

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(STAMPS)/install: $(STAMPS)/apt $(VENV)/bin/python pyproject.toml constraints.txt
	$(PIP) install -q --upgrade pip "setuptools>=77" wheel
	$(PIP) install -q -c constraints.txt -e ".[cpu,realsense,orbbec,gui,train,dev]"
	@# The Orbbec SDK's Linux wheel; its declared dependencies are not needed (see pyproject.toml).
	-$(PIP) install -q --no-deps pyorbbecsdk-community || echo "note: pyorbbecsdk-community did not install; Orbbec SDK support is off"
	@touch $@

# Opt-in, on a machine with an NVIDIA GPU and driver: a separate venv with onnxruntime-gpu (not the
# CPU wheel), TensorRT and cuda-python; the GPU tests must run (EDGE_FAS_REQUIRE_GPU makes a skip a
# failure), then doctor and a bench of every GPU runtime on the demo artifact, with engine builds,
# precision gates and parity printed.
GPU_VENV := .venv-gpu
gpu-check: $(STAMPS)/apt
	test -x $(GPU_VENV)/bin/python || $(PYTHON) -m venv $(GPU_VENV)
	$(GPU_VENV)/bin/python -m pip install -q --upgrade pip "setuptools>=77" wheel
	$(GPU_VENV)/bin/python -m pip install -q -c constraints.txt -e ".[gpu,tensorrt,dev]"
	$(GPU_VENV)/bin/edge-fas doctor
	EDGE_FAS_REQUIRE_GPU=1 EDGE_FAS_CACHE=$$(mktemp -d) QT_QPA_PLATFORM=offscreen $(GPU_VENV)/bin/python -m pytest -q -rs \
	  tests/test_runtime_tensorrt.py tests/test_tensorrt_api.py tests/test_runtime_select.py tests/test_precision.py
	$(GPU_VENV)/bin/edge-fas bench --artifact demo --batch 1,8 --iters 100 --warmup 10

clean:
	rm -rf $(VENV) $(GPU_VENV) $(STAMPS) *.egg-info
