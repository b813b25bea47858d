#!/usr/bin/env bash
# make test-kernels: the tests that compare numbers (model equations, aggregation,
# accounting, simulation determinism, export parity and agreement) under float-kernel
# settings that really change TensorFlow's numbers on this CPU (scripts/kernel_probe.py
# picks them: TF_ENABLE_ONEDNN_OPTS=0 and a lower ONEDNN_MAX_CPU_ISA). The export fixture
# appends the hash of its float32 logits per setting to $FL_SIM_LOGIT_HASH_LOG; the table
# at the end shows the hashes differ (make test logs the default's when the variable is set).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
export FL_SIM_LOGIT_HASH_LOG=${FL_SIM_LOGIT_HASH_LOG:-$PWD/.cache/logit_hashes.txt}
mkdir -p "$(dirname "$FL_SIM_LOGIT_HASH_LOG")"
# Model equations, update math, aggregation and DP mechanisms, evaluation metrics and the
# trainer (unit); training determinism and XLA-vs-graph equality; export parity and
# agreement. Accounting (dp-accounting, autodp, tensorflow-privacy) is pure NumPy/SciPy that
# no TF kernel setting touches, so its oracles run once, in make test.
NUMERIC=(tests/unit/test_models.py tests/unit/test_si_cifg.py tests/unit/test_si_transformer.py
         tests/unit/test_export_modes.py tests/unit/test_fedavg_math.py tests/unit/test_strategy.py
         tests/unit/test_strategy_composition.py tests/unit/test_dp_strategy.py
         tests/unit/test_privacy_clipping.py tests/unit/test_privacy_noise.py
         tests/unit/test_privacy_adaptive.py tests/unit/test_evaluation.py tests/unit/test_stats.py
         tests/unit/test_pruning.py tests/unit/test_trainer_xla.py
         tests/integration/test_simulation.py tests/integration/test_xla_run.py
         tests/integration/test_export.py)
# A failed probe must fail the target (a process substitution would hide its exit code).
probe_out=$($PY scripts/kernel_probe.py)
mapfile -t SETTINGS <<< "$probe_out"
[ -n "${SETTINGS[0]:-}" ] || SETTINGS=()  # empty output: no setting
if [ ${#SETTINGS[@]} -eq 0 ]; then
  echo "test-kernels: no candidate setting changes the floats on this CPU; nothing to run" >&2
  exit 0
fi
for s in "${SETTINGS[@]}"; do
  echo "== test-kernels: $s"
  env "$s" FL_SIM_KERNEL_SETTING="$s" $PY -m pytest -q "${NUMERIC[@]}"
done
echo "== float32 logit hashes of the export fixture (first 16 hex digits), per setting:"
sort -u "$FL_SIM_LOGIT_HASH_LOG" | awk '{printf "%-28s %-16s %s\n", $1, $2, substr($3, 1, 16)}'
