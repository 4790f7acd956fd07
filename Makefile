# Two commands set everything up on a fresh machine (Python 3.11):
#   make demo   create .venv with the pinned dependencies, run the demo studies and
#               write reports/report.html
#   make test   the test suite (what CI runs)
#   make example  the example plugin (examples/) against TCSA: reports/byo/ (report.html too)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
CORES  ?= $(shell nproc)
STAMP  := $(VENV)/.installed-stamp

.PHONY: install demo example browser lint test lock clean-results

install: $(STAMP)

# Reinstall whenever the pinned versions or the package metadata change. The test-only pins
# (NeuroBench, for the energy cross-check) go in without their dependencies: what they import
# at test time is already pinned in requirements.lock.
# pip compiles every installed module to bytecode on one core (about 1.5 of its 3 minutes
# here); compileall does the same on every core afterwards. Its exit status is ignored, as pip
# ignores the same failures: some packages ship data files that are not Python 3.11.
$(STAMP): requirements.lock requirements-test.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet pip==26.3
	$(BIN)/python -m pip install --quiet --no-compile -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-compile --no-deps -r requirements-test.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/python -m compileall -q -j 0 $(VENV)/lib > /dev/null 2>&1 || true
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/snakemake --cores $(CORES) --config studies=demo
	$(BIN)/snakemake --config studies=demo --report reports/report.html

# Bring your own module (README): examples/tdg_attention.py, a plugin attention, against TCSA
# on the demo's event digits. The overlay adds study byo-dvs and paper byo to params.yaml.
EXAMPLE := --configfile examples/tdg-vs-tcsa.yaml
example: $(STAMP)
	$(BIN)/snakemake --cores $(CORES) $(EXAMPLE)
	$(BIN)/snakemake $(EXAMPLE) --report reports/byo/report.html

# The report page test drives Debian's chromium (playwright's own browser download needs a
# network); installed here when missing and apt-get can (root), else that test skips locally.
browser:
	@command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq chromium >/dev/null) || \
		echo "warning: could not install chromium; the report page test will be skipped"

# Style and workflow checks, run by `make test` (so CI enforces them): ruff's lint and format
# on the Python, snakefmt and Snakemake's own linter on the workflow.
lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src tests benchmarks examples
	$(BIN)/snakefmt --check Snakefile pipeline
	$(BIN)/snakemake --lint

test: $(STAMP) browser lint
	$(BIN)/python -m pytest

# Re-pin every dependency from the current .venv (after changing pyproject.toml); the
# test-only pins stay in requirements-test.lock.
lock:
	$(BIN)/python -m pip freeze --exclude-editable | \
		grep -v -i -E '^(spikeattn|neurobench|snntorch|ruff|snakefmt|black|mypy.extensions|pytokens|shfmt.py)==' \
		> requirements.lock
	{ sed '/^      - /d' envs/spikeattn.yaml; sed 's/^/      - /' requirements.lock; } > envs/spikeattn.yaml.tmp
	mv envs/spikeattn.yaml.tmp envs/spikeattn.yaml
