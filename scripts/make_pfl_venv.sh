#!/usr/bin/env bash
# Build .venv-pfl: Apple's pfl-research 0.6.0 with TensorFlow 2.21 and tf_keras, the peer
# framework benchmarks/bench_pfl.py runs fl_sim's job in (`make bench-pfl`). Only for that
# benchmark: `make test` never builds or needs it, and fl_sim never imports from it.
# It is separate from .venv because pfl 0.6.0 requires dp-accounting<0.6 and fl_sim pins 0.6.0.
#
# Usage: bash scripts/make_pfl_venv.sh        (no arguments; exit 2 on a usage error)
#   PFL_VENV (default .venv-pfl) and PYTHON_PFL (default python3.11) override the defaults.
#
# Idempotent: the stamp file .venv-pfl/.installed holds the sha256 of the pins in
# benchmarks/requirements-pfl.txt (comments and blank lines dropped, so editing a pin's
# reason does not cost a rebuild). When it matches, the stamp is only touched (for make's
# timestamp rule); otherwise the venv is rebuilt from scratch. pip's output goes to
# .venv-pfl/build.log; on failure its tail is shown.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$#" -ne 0 ]; then
    echo "usage: bash scripts/make_pfl_venv.sh   (no arguments; set PFL_VENV / PYTHON_PFL to override)" >&2
    exit 2
fi
REQ=benchmarks/requirements-pfl.txt
VENV=${PFL_VENV:-.venv-pfl}
PY=${PYTHON_PFL:-python3.11}
STAMP="$VENV/.installed"
LOG="$VENV/build.log"

[ -f "$REQ" ] || { echo "make_pfl_venv: error: pin file $REQ not found" >&2; exit 2; }
want=$(sed -e 's/#.*//' -e 's/^[[:space:]]*//' -e 's/[[:space:]]*$//' "$REQ" | grep -v '^$' \
       | sha256sum | cut -d' ' -f1)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && [ -x "$VENV/bin/python" ]; then
    touch "$STAMP"
    echo "make_pfl_venv: $VENV is up to date"
    exit 0
fi
command -v "$PY" >/dev/null || { echo "make_pfl_venv: error: $PY not found (the pfl venv is pinned for Python 3.11; set PYTHON_PFL)" >&2; exit 2; }
"$PY" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
    || { echo "make_pfl_venv: error: $PY is not Python 3.11 (the pins in $REQ were resolved for 3.11)" >&2; exit 2; }
avail_kib=$(df -Pk . | awk 'NR == 2 {print $4}')
if [ "${avail_kib:-0}" -lt $((4 * 1024 * 1024)) ]; then
    echo "make_pfl_venv: error: under 4 GiB free on $(df -P . | awk 'NR == 2 {print $6}') (the venv takes 2.4 GB, pip's downloads as much again)" >&2
    exit 1
fi

start=$(date +%s)
echo "make_pfl_venv: building $VENV from $REQ (2-10 minutes; 2.4 GB installed)"
rm -rf "$VENV"
"$PY" -m venv "$VENV"
# Wheels only: nothing in this stack needs compiling; a source build would mean a pin has
# no wheel for this platform.
if ! "$VENV/bin/python" -m pip install --disable-pip-version-check --no-input \
        --only-binary=:all: -r "$REQ" >"$LOG" 2>&1; then
    grep -v "^WARNING: Location" "$LOG" | tail -40 >&2
    echo "make_pfl_venv: error: pip install failed (full log: $LOG)" >&2
    exit 1
fi
"$VENV/bin/python" -m pip check
# Every installed distribution must be one of the pins (nothing resolved behind our back).
"$VENV/bin/python" scripts/check_pins.py "$REQ" make_pfl_venv
# Fail here, not in the benchmark, if the pins do not import together (and Keras 2 it is).
CUDA_VISIBLE_DEVICES="" TF_CPP_MIN_LOG_LEVEL=3 TF_USE_LEGACY_KERAS=1 "$VENV/bin/python" -c '
import tensorflow as tf, tf_keras, pfl
from pfl.model.tensorflow import TFModel
from pfl.algorithm import FederatedAveraging
assert tf.keras.__name__.startswith("tf_keras"), f"tf.keras is {tf.keras.__name__}, expected tf_keras (Keras 2)"
print("make_pfl_venv: pfl", pfl.__version__, "imports with tensorflow", tf.__version__, "and tf_keras", tf_keras.__version__)
' 2> >(grep -v "Unable to register cu\|is_gpu_available\|Instructions for updating\|list_physical_devices\|^[IW]0000 \|absl::InitializeLog" >&2)
echo "$want" > "$STAMP"
echo "make_pfl_venv: done in $(( $(date +%s) - start )) s"
