"""`fl-sim run` shows live progress bars on a terminal and keeps them out of logs: the same
2-round run once on a pseudo-terminal (pty module) and once into a pipe."""

import os
import re
import subprocess

from tests.integration.conftest import FL_SIM, REPO, run_cli
from tests.unit.test_progress import drain

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
ARGS = ["run", "experiments/smoke.toml", "--rounds", "2"]


def test_a_terminal_gets_bars(tmp_path):
    master, slave = os.openpty()
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "160", "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.Popen([*FL_SIM, *ARGS, "--out", str(tmp_path)], cwd=REPO, stdin=slave,
                            stdout=slave, stderr=slave, env=env, start_new_session=True)
    os.close(slave)
    chunks: list[bytes] = []
    reader = drain(master, chunks)
    assert proc.wait(timeout=600) == 0
    reader.join(timeout=30)
    os.close(master)
    text = b"".join(chunks).decode("utf-8", "replace")
    assert ANSI.search(text) and "━" in text          # a bar, redrawn in place
    assert "[si_cifg] round" in text and "2/2" in text and "ETA" in text
    assert not re.search(r"round +1/2 +clients", text)  # no per-round log lines
    assert "Run directory:" in text                    # messages and the table still print


def test_a_pipe_gets_one_line_per_round_and_no_escapes(tmp_path):
    res = run_cli(*ARGS, "--out", tmp_path, env_extra={"TERM": "xterm-256color"})
    assert res.returncode == 0, res.stderr
    assert not ANSI.search(res.stdout) and "━" not in res.stdout
    lines = [ln for ln in res.stdout.splitlines() if re.match(r"\[si_cifg\] round +\d+/2 +clients", ln)]
    assert [re.search(r"round +(\d+)/2", ln).group(1) for ln in lines] == ["1", "2"]
