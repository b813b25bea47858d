"""`flwr run .` through Flower's own CLI (slow: Flower builds a runtime env for the app)."""

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from fl_sim.app.cluster import stop_pids
from fl_sim.processes import start_ticks

REPO = Path(__file__).resolve().parents[2]


def _processes_started_for(marker: str) -> list[int]:
    """PIDs whose command line names ``marker`` (this test's tmp dir), and their children."""
    found, parents = [], {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        parents[int(entry.name)] = ppid
        if marker in cmd:
            found.append(int(entry.name))
    children = [pid for pid, ppid in parents.items() if ppid in found and pid not in found]
    return found + children


def _without_venv_on_path() -> str:
    venv_bin = str(Path(sys.executable).parent)
    return os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep)
                           if p and os.path.realpath(p) != os.path.realpath(venv_bin))


@pytest.mark.slow
def test_flwr_run_dot_as_the_readme_types_it(tmp_path):
    """In a shell whose PATH lacks .venv/bin, as a new user's has: activate, then flwr run .

    Flower starts flower-superlink and its helpers by name from PATH, so `.venv/bin/flwr
    run .` alone fails ("No such file or directory: flower-superlink"); the README says to
    activate the venv first (or `make flwr-run`, which does the same).
    """
    activate = Path(sys.executable).parent / "activate"
    out = tmp_path / "results"
    script = (f". {shlex.quote(str(activate))} && flwr run . --stream --run-config "
              + shlex.quote(f'experiment="experiments/smoke.toml" output-dir="{out}"'))
    env = {**os.environ, "PATH": _without_venv_on_path(), "FLWR_HOME": str(tmp_path / "flwr-home")}
    env.pop("VIRTUAL_ENV", None)
    try:
        proc = subprocess.run(["bash", "-c", script], cwd=REPO, capture_output=True, text=True,
                              timeout=600, env=env)
    finally:
        # `flwr run` with the local-simulation connection starts a background SuperLink
        # (logging into our FLWR_HOME) that outlives the command: stop what it started.
        pids = _processes_started_for(str(tmp_path))
        stop_pids(pids)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    runs = list((out / "smoke").iterdir())
    assert len(runs) == 1 and (runs[0] / "summary.json").exists()
    assert "round   2/2" in proc.stdout
    # Running, not merely not yet reaped by its parent (a zombie has exited).
    assert not [p for p in pids if start_ticks(p) is not None], "a SuperLink was left running"
