#!/usr/bin/env bash
# Build .venv-ref: the tensorflow-privacy 0.9 reference environment (Python 3.11, TF 2.15.1,
# and autodp 0.2.3.1) used as an oracle by tests/integration/test_tfp_crosscheck.py and
# test_autodp_crosscheck.py (run: `make .venv-ref`).
# It is separate from .venv because TF 2.15 needs protobuf<5, which current Flower cannot
# use; fl_sim never imports anything from it.
#
# Idempotent: the stamp file .venv-ref/.installed holds the sha256 of the pins in
# tests/reference/requirements-ref.txt (comments and blank lines dropped, so editing a
# pin's reason does not cost a rebuild). When it matches, the stamp is only touched (so
# make's timestamp rule is satisfied); otherwise the venv is rebuilt from scratch. The test
# computes the same hash, so a stale venv fails the test instead of silently being used.
#   REF_VENV (default .venv-ref), PYTHON_REF (default python3.11) override the defaults.
set -euo pipefail
cd "$(dirname "$0")/.."

REQ=tests/reference/requirements-ref.txt
VENV=${REF_VENV:-.venv-ref}
PY=${PYTHON_REF:-python3.11}
STAMP="$VENV/.installed"
LOG="$VENV/build.log"

# Keep in sync with _pins_hash() in tests/integration/test_tfp_crosscheck.py.
want=$(sed -e 's/#.*//' -e 's/^[[:space:]]*//' -e 's/[[:space:]]*$//' "$REQ" | grep -v '^$' \
       | sha256sum | cut -d' ' -f1)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && [ -x "$VENV/bin/python" ]; then
    touch "$STAMP"
    echo "make_ref_venv: $VENV is up to date"
    exit 0
fi
command -v "$PY" >/dev/null || { echo "make_ref_venv: error: $PY not found (the reference venv needs Python 3.11; set PYTHON_REF)" >&2; exit 2; }
"$PY" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
    || { echo "make_ref_venv: error: $PY is not Python 3.11 (TF 2.15.1 has wheels for 3.9-3.11 only)" >&2; exit 2; }

start=$(date +%s)
echo "make_ref_venv: building $VENV from $REQ (1-5 minutes; 2 GB installed)"
rm -rf "$VENV"
"$PY" -m venv "$VENV"
# pip's output goes to a log (the mirror config here prints hundreds of harmless warnings);
# on failure its tail is shown. Wheels only: nothing in this stack should need compiling,
# and a source build would mean a pin has no wheel for this platform. The one exception is
# autodp, a pure-Python package published only as an sdist (nothing to compile).
if ! "$VENV/bin/python" -m pip install --disable-pip-version-check --no-input \
        --only-binary=:all: --no-binary=autodp -r "$REQ" >"$LOG" 2>&1; then
    grep -v "^WARNING: Location" "$LOG" | tail -40 >&2
    echo "make_ref_venv: error: pip install failed (full log: $LOG)" >&2
    exit 1
fi
# Every installed distribution must be one of the pins (nothing resolved behind our back).
"$VENV/bin/python" -m pip check
"$VENV/bin/python" scripts/check_pins.py "$REQ" make_ref_venv
# Fail here, not in the test, if the pins do not import together.
CUDA_VISIBLE_DEVICES="" TF_CPP_MIN_LOG_LEVEL=3 "$VENV/bin/python" -c 'import tensorflow_privacy as tfp; from tensorflow_privacy import GaussianSumQuery, QuantileAdaptiveClipSumQuery, compute_dp_sgd_privacy; print("make_ref_venv: tensorflow-privacy", tfp.__version__, "imports"); import autodp.transformer_zoo; print("make_ref_venv: autodp imports")' 2> >(grep -v "Unable to register cu" >&2)
echo "$want" > "$STAMP"
echo "make_ref_venv: done in $(( $(date +%s) - start )) s"
