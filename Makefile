# The two fresh-machine commands (README): `make demo` (main job) and `make test` (the test suite).
# Both set up what they need first: Node.js for the cdktn engine, a virtualenv with spotkit and its
# test dependencies, and the Terraform provider mirror when this machine has one.
VENV ?= .venv
PYTHON ?= python3
PIP = $(VENV)/bin/pip
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION = 20

.PHONY: setup test demo bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@command -v node >/dev/null 2>&1 || { echo "setup: installing Node.js (needed by the cdktn engine)"; \
	  (apt-get update -qq && apt-get install -y -qq nodejs) >/dev/null; }
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e '.[dev,plot]'
	@touch $@

test: setup
	$(VENV)/bin/python -m pytest -n 2 -q

# Main job: deploy the training stack to the local target (embedded AWS emulator) with real Terraform,
# drill spot interruptions of a real workload with and without the agent, check every stack, summarize.
# A running emulator is reused; `spotkit local stop` ends it.
demo: setup
	SPOTKIT_PROVIDER_MIRROR=$${SPOTKIT_PROVIDER_MIRROR:-auto} $(VENV)/bin/spotkit demo

bench: setup
	$(VENV)/bin/python -m bench

clean:
	-[ -x $(VENV)/bin/spotkit ] && $(VENV)/bin/spotkit local stop
	rm -rf $(VENV) cdktf.out .spotkit .pytest_cache
