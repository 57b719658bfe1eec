# The two fresh-machine commands (README): `make demo` (main job) and `make test` (the test suite).
# Both set up what they need first: Node.js for the cdktn engine, a virtualenv with spotkit and its
# test dependencies, and the Terraform provider mirror when this machine has one.
VENV ?= .venv
PYTHON ?= python3
PIP = $(VENV)/bin/pip
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION = 20

.PHONY: setup test demo bench clean py310 iam iam-setup

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@command -v node >/dev/null 2>&1 || { echo "setup: installing Node.js (needed by the cdktn engine)"; \
	  (apt-get update -qq && apt-get install -y -qq nodejs) >/dev/null; }
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e '.[dev,plot]'
	@touch $@

test: setup iam-setup
	$(VENV)/bin/python -m pytest -n 2 -q

# The IAM evaluator of the proofs (docs/iam.md): @cloud-copilot/iam-simulate + iam-data, pinned by the
# lock file, in a local prefix (tests/support/iam/node_modules, git-ignored).
IAM_NODE_MODULES = tests/support/iam/node_modules/.package-lock.json
iam-setup: $(IAM_NODE_MODULES)
$(IAM_NODE_MODULES): tests/support/iam/package-lock.json
	@command -v npm >/dev/null 2>&1 || { echo "iam-setup: installing npm"; (apt-get update -qq && apt-get install -y -qq npm) >/dev/null; }
	npm ci --prefix tests/support/iam --no-audit --no-fund --loglevel=error

# IAM proven without an account: every recorded call of the Lambda (its zip in a clean Lambda runtime) and of
# the runbooks allowed by its principal's synthesized policy, the negative cases denied, every policy linted.
iam: setup iam-setup
	@proven=$$(mktemp); \
	SPOTKIT_IAM_PROVEN=$$proven $(VENV)/bin/python -m pytest -p no:xdist -q tests/test_iam_policies.py \
	  tests/test_iam_operator.py tests/test_iam_instance_role.py tests/test_iam_fallback.py tests/test_lambda_runtime.py || { rm -f $$proven; exit 1; }; \
	echo "iam: $$(sort -u $$proven | wc -l) distinct (principal, action) pairs proven allowed:"; \
	sort -u $$proven | awk -F'\t' '{print "  " $$1 "  " $$2}'; rm -f $$proven

# Main job: deploy the training stack to the local target (embedded AWS emulator) with real Terraform,
# drill spot interruptions of a real workload with and without the agent, check every stack, summarize.
# A running emulator is reused; `spotkit local stop` ends it.
demo: setup
	SPOTKIT_PROVIDER_MIRROR=$${SPOTKIT_PROVIDER_MIRROR:-auto} $(VENV)/bin/spotkit demo

# The Python floor: a 3.10 venv (pyenv's 3.10.13) installs spotkit and synthesizes the training stack.
# Skipped, saying why, on a machine without that interpreter. About a minute with a warm pip cache.
PY310_VERSION ?= 3.10.13
PY310_VENV ?= .venv-py310
py310:
	@py=$$(PYENV_VERSION=$(PY310_VERSION) pyenv which python 2>/dev/null || true); \
	if [ -z "$$py" ] || ! "$$py" -c 'import sys; assert sys.version_info[:2] == (3, 10)' 2>/dev/null; then \
	  echo "py310: SKIPPED: no Python $(PY310_VERSION) here (pyenv with PYENV_VERSION=$(PY310_VERSION) not found)"; \
	  exit 0; fi; \
	set -e; echo "py310: $$($$py --version) at $$py"; \
	[ -x $(PY310_VENV)/bin/spotkit ] || { "$$py" -m venv $(PY310_VENV) && $(PY310_VENV)/bin/pip install -q -e .; }; \
	out=$$(mktemp -d); \
	$(PY310_VENV)/bin/spotkit synth training --out "$$out" >/dev/null; \
	test -s "$$out/stacks/training/cdk.tf.json"; \
	printf 'training:\n  group:\n    max_size: 6\n' > "$$out/c.yaml"; \
	printf '[training.group]\nmax_size = 6\n' > "$$out/c.toml"; \
	$(PY310_VENV)/bin/python -c "import sys; from toolkit.config import read_config_file as r; \
	  assert r(sys.argv[1]) == r(sys.argv[2]) == {'training': {'group': {'max_size': 6}}}" "$$out/c.yaml" "$$out/c.toml"; \
	rm -rf "$$out"; echo "py310: OK (install, spotkit synth training, YAML and TOML config)"

bench: setup
	$(VENV)/bin/python -m bench

clean:
	-[ -x $(VENV)/bin/spotkit ] && $(VENV)/bin/spotkit local stop
	rm -rf $(VENV) $(PY310_VENV) cdktf.out .spotkit .pytest_cache tests/support/iam/node_modules
