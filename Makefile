# The two set-up commands of the README:
#   make demo   install everything into .venv and run the SlipperyPush stack
#   make test   install everything into .venv and run the test suite
# A second run reuses the installed environment (the stamp file below).

PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.rpl-installed
TORCH_WHEEL := $(firstword $(wildcard /opt/wheels/torch-2.13.0+cpu-*.whl))
TORCH_REQ := $(if $(TORCH_WHEEL),$(TORCH_WHEEL),torch --index-url https://download.pytorch.org/whl/cpu)
PACKAGES := rpl_interfaces rpl_sim_bridge rpl_base_controllers rpl_residual_node rpl_bags rpl_trainer \
	rpl_bringup

# DDS stays on this machine: loopback + shared memory only (override on a robot network).
export ROS_AUTOMATIC_DISCOVERY_RANGE ?= LOCALHOST
export FASTDDS_DEFAULT_PROFILES_FILE ?= $(CURDIR)/config/fastdds_loopback.xml
export RMW_IMPLEMENTATION ?= rmw_fastrtps_cpp

DEMO_EPISODES ?= 20
# The residual the demo runs: empty = rpl demo's own default (rpl_bringup.demo.DEFAULT_MODEL,
# the committed SlipperyPush model; README: results); `none` = base only; or a file.
DEMO_MODEL ?=

.PHONY: install demo test lint bench clean

$(STAMP): requirements.txt $(foreach p,$(PACKAGES),src/$(p)/setup.py)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_REQ)
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps $(foreach p,$(PACKAGES),-e src/$(p))
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/rpl demo --episodes '$(DEMO_EPISODES)' $(if $(DEMO_MODEL),--model '$(DEMO_MODEL)')

test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

bench: $(STAMP)
	$(PY) benchmarks/loop_throughput.py

clean:
	rm -rf $(VENV) build install log
