# slowfast: `make demo` runs the main job, `make test` runs the tests. Both set up first.
SHELL := /bin/bash
PYTHON_BOOT ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.setup-stamp
APT_PACKAGES := libusb-1.0-0 libegl1 libosmesa6 libgl1 libglvnd0 ffmpeg chromium chromium-driver
TORCH_VERSION ?= 2.13.0
EXTRAS ?= cpu,ros-wheels,dev
export MUJOCO_GL ?= egl
export PYOPENGL_PLATFORM ?= egl

.PHONY: setup demo test bench doctor clean

setup: $(STAMP)

# Re-runs only when the dependency list or this file changes: seconds when already done.
$(STAMP): pyproject.toml Makefile
	@bash scripts/setup_system.sh $(APT_PACKAGES)
	@test -x $(PY) || $(PYTHON_BOOT) -m venv $(VENV)
	@$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	@$(PY) -c "import torch, sys; sys.exit(0 if torch.__version__.split('+')[0] == '$(TORCH_VERSION)' else 1)" 2>/dev/null \
	  || $(PY) -m pip install -q --disable-pip-version-check torch==$(TORCH_VERSION)
	@$(PY) -m pip install -q --disable-pip-version-check -e ".[$(EXTRAS)]"
	@touch $(STAMP)
	@echo "setup: done ($(VENV))"

# The learned Reactive Diffusion Policies shipped in checkpoints/ (trained by `slowfast
# experiment rdp-vs-dp --task wipe|lift`), over ROS 2, one perturbed held-out episode each,
# with the sim settings they were evaluated at (docs/results.md).
demo: setup
	$(VENV)/bin/slowfast sim --task wipe --controller rdp --policy checkpoints/wipe --episodes 1 --seed 0 \
	  --set rdp_slow.rate_hz=1.5625 --out out/demo/wipe
	$(VENV)/bin/slowfast sim --task lift --controller rdp --policy checkpoints/lift --episodes 1 --seed 0 \
	  --set rdp_slow.rate_hz=1.5625 --set sim_node.pose_hz=100 --set sim_node.tactile_hz=60 --out out/demo/lift

test: setup
	$(PY) -m pytest -q

bench: setup
	$(VENV)/bin/slowfast bench sim --json

doctor: setup
	$(VENV)/bin/slowfast doctor

clean:
	rm -rf $(VENV) out build *.egg-info
