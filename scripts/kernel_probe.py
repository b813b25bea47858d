"""Which float-kernel settings really change TensorFlow's numbers on this CPU.

Each candidate setting runs a fresh process (the variables are read when TF loads): a
2-round smoke run of CIFG from a fixed seed, whose final weights are hashed. A setting
whose hash equals the default's changes nothing here and proves nothing (on an Intel Xeon
with AVX-512, ONEDNN_MAX_CPU_ISA=AVX2 is bit-identical to the default), so `make
test-kernels` runs the numeric tests only under settings that moved the floats.

Prints one line per candidate (setting, hash, changed?) to stderr, and the settings that
changed the floats, one per line, to stdout. Usage: python scripts/kernel_probe.py
"""

from __future__ import annotations

import os
import subprocess
import sys

CANDIDATES = ["TF_ENABLE_ONEDNN_OPTS=0", "ONEDNN_MAX_CPU_ISA=AVX2", "ONEDNN_MAX_CPU_ISA=SSE41"]

def probe(setting: str | None) -> str:
    """Hash of the final weights of a 2-round smoke CIFG run (the real training path: a
    graph-mode Keras model under Flower's simulation; a bare eager model misses oneDNN's
    graph rewrites, which TF_ENABLE_ONEDNN_OPTS switches)."""
    import glob
    import hashlib
    import tempfile

    import numpy as np

    env = {k: v for k, v in os.environ.items() if k not in ("TF_ENABLE_ONEDNN_OPTS", "ONEDNN_MAX_CPU_ISA")}
    if setting:
        key, value = setting.split("=", 1)
        env[key] = value
    with tempfile.TemporaryDirectory() as out:
        subprocess.run([sys.executable, "-m", "fl_sim.app.cli", "run", "experiments/smoke.toml",
                        "--rounds", "2", "--set", "model.kind=cifg", "--out", out],
                       env=env, capture_output=True, text=True, check=True, timeout=600)
        (weights,) = glob.glob(f"{out}/smoke/*/final_weights.npz")
        h = hashlib.sha256()
        with np.load(weights) as data:
            for k in sorted(data.files):
                h.update(data[k].tobytes())
        return h.hexdigest()


def main() -> int:
    base = probe(None)
    print(f"kernel probe: default {base[:16]}", file=sys.stderr)
    chosen = []
    for setting in CANDIDATES:
        lower_isa = setting.startswith("ONEDNN_MAX_CPU_ISA")
        if lower_isa and any(s.startswith("ONEDNN_MAX_CPU_ISA") for s in chosen):
            continue  # one lower ISA that moves the numbers is enough: a second adds time only
        h = probe(setting)
        moved = h != base
        print(f"kernel probe: {setting} {h[:16]} "
              f"{'changes the floats' if moved else 'bit-identical to the default: not used'}", file=sys.stderr)
        if moved:
            chosen.append(setting)
    print("\n".join(chosen))
    return 0


if __name__ == "__main__":
    sys.exit(main())
