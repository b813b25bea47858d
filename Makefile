# Two commands for a fresh machine: `make demo` and `make test`. Both create .venv and
# install the pinned dependencies (requirements.lock) when needed.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export TF_CPP_MIN_LOG_LEVEL ?= 2
export PYTHONUNBUFFERED := 1

.PHONY: demo test test-slow test-kernels test-pfl install lock clean-cache help

help:
	@echo "make demo       run the default experiment (SI-CIFG vs CIFG on Shakespeare, 3 seeds)"
	@echo "make test       run the test suite (what CI runs)"
	@echo "make test-slow  run the slow end-to-end tests (CI runs them too)"
	@echo "make test-pfl   build .venv-pfl and run the test that needs it (not in CI)"
	@echo "make test-kernels  the numeric tests under other float kernels (CI runs them too)"
	@echo "make install    create .venv with the pinned dependencies"
	@echo "make bench      run the performance benchmarks (table in docs/performance.md)"
	@echo "make bench-pfl  build .venv-pfl (pfl-research 0.6.0, 2.4 GB) and run fl_sim vs pfl"
	@echo "make test-compose  docker-compose cluster end to end (root; docs/deployment.md)"
	@echo "make flwr-run   the default experiment through Flower's own CLI (flwr run .)"

$(STAMP): pyproject.toml requirements.lock
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found (fl_sim needs Python 3.11)"; exit 2; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip==26.3"
	$(PY) -m pip install --quiet -r requirements.lock
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

install: $(STAMP)

# Train both models once per seed, export seed 0's models of the run just made (the newest
# results/demo/<run_id>/seed-0) to TFLite and print their size / accuracy / latency table
# (seed-0/<model>/export/, docs/android_bundle.md), then the summary over seeds again:
# word top-1/top-3 mean ± 95% CI per model, the baselines and the paired verdict.
demo: $(STAMP)
	$(VENV)/bin/fl-sim run experiments/demo.toml --set 'experiment.seeds=[0,1,2]'
	run=$$(ls -d results/demo/*/seed-0 | tail -1) && \
	  $(VENV)/bin/fl-sim export $$run --eval-sequences 200 --latency-runs 50 --quiet && \
	  echo && cat $$(dirname $$run)/summary.md

test: $(STAMP) .venv-ref
	$(PY) -m pytest -q tests

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow tests

# The export report's budgets and sizes on the trained demo SI-CIFG (trains it first:
# 17 min at load ~30 here). Outside .ci/run to keep CI within its budget; docs/testing.md.
.PHONY: test-demo-export
test-demo-export: $(STAMP)
	$(PY) -m pytest -q -m demo_model tests

# The tests that compare numbers, under float-kernel settings that change TF's numbers on
# this CPU (TF_ENABLE_ONEDNN_OPTS=0, a lower ONEDNN_MAX_CPU_ISA); scripts/test_kernels.sh.
test-kernels: $(STAMP) .venv-ref
	PY=$(PY) bash scripts/test_kernels.sh

lock: $(STAMP)
	{ head -2 requirements.lock; $(PY) -m pip freeze --exclude-editable | grep -v "^fl-sim"; } > requirements.lock.new
	mv requirements.lock.new requirements.lock

clean-cache:
	rm -rf .cache/fl_sim

# `flwr run .` as Flower's CLI runs it. Flower starts flower-superlink and its helpers by
# name from PATH, so .venv/bin must be on it (or activate the venv; README). Arguments go
# in ARGS: make flwr-run ARGS="--run-config 'num-server-rounds=5'".
.PHONY: flwr-run
flwr-run: $(STAMP)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/flwr run . $(ARGS)

# .venv-ref: tensorflow-privacy 0.9 / TF 2.15.1 oracle for tests/integration/test_tfp_crosscheck.py,
# a separate pinned venv (TF 2.15 needs protobuf<5, which Flower cannot share). The script
# rebuilds only when the pins in tests/reference/requirements-ref.txt change (hash in the stamp).
REF_STAMP := .venv-ref/.installed
.PHONY: .venv-ref
.venv-ref: $(REF_STAMP)
$(REF_STAMP): tests/reference/requirements-ref.txt scripts/make_ref_venv.sh
	PYTHON_REF=$(PYTHON) bash scripts/make_ref_venv.sh

# make bench: the performance benchmarks (benchmarks/; under 30 min on 2 cores). Writes
# benchmarks/results/*.json and the table in docs/performance.md.
.PHONY: bench
bench: $(STAMP)
	$(PY) -m benchmarks.run_all

# make bench-pfl: fl_sim vs Apple's pfl-research on the same job (benchmarks/bench_pfl.py,
# issue 18 §4), then the table. Builds .venv-pfl (scripts/make_pfl_venv.sh, pins in
# benchmarks/requirements-pfl.txt) first; `make bench` includes it once the venv exists.
PFL_STAMP := .venv-pfl/.installed
$(PFL_STAMP): benchmarks/requirements-pfl.txt scripts/make_pfl_venv.sh
	PYTHON_PFL=$(PYTHON) bash scripts/make_pfl_venv.sh
.PHONY: bench-pfl
bench-pfl: $(STAMP) $(PFL_STAMP)
	$(PY) -m benchmarks.run_all bench_pfl

# make test-pfl: the test that needs .venv-pfl (pfl's Keras model computes fl_sim's function).
test-pfl: $(STAMP) $(PFL_STAMP)
	$(PY) -m pytest -q -m pfl_venv tests

# make test-compose: the docker-compose cluster end to end (scripts/compose_e2e.sh: private
# dockerd, debootstrap base image, image build, 2-round run with TLS + SuperNode auth).
# Needs root; ~8 min here from a clean checkout. See docs/deployment.md, "docker-compose".
.PHONY: test-compose
test-compose: $(STAMP)
	$(PY) -m pytest -q -m compose -s tests/e2e/test_compose.py
