"""Exit non-zero unless the running interpreter's installed distributions are exactly the
pins of a requirements file (nothing resolved behind our back, nothing missing). Used by the
reference-venv scripts (make_ref_venv.sh, make_pfl_venv.sh) with the venv's own python:

    VENV/bin/python scripts/check_pins.py REQUIREMENTS NAME
"""

import re
import subprocess
import sys


def canon(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def main(req: str, who: str) -> None:
    pins = {}
    for line in open(req):
        line = line.split("#", 1)[0].strip()
        if line:
            name, ver = line.split("==")
            pins[canon(name)] = ver.strip()
    frozen = subprocess.run([sys.executable, "-m", "pip", "freeze", "--all"], check=True,
                            capture_output=True, text=True).stdout.split()
    got = {canon(n): v for n, v in (entry.split("==") for entry in frozen)}
    got.pop("pip", None)  # pip itself comes with the interpreter's ensurepip
    bad = {n: (pins.get(n), got.get(n)) for n in pins.keys() | got.keys() if pins.get(n) != got.get(n)}
    if bad:
        sys.exit(f"{who}: error: installed != pinned (name: (pinned, installed)): {bad}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: check_pins.py REQUIREMENTS NAME")
    main(sys.argv[1], sys.argv[2])
