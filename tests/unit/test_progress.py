"""The progress display: rich bars on a terminal (a pseudo-terminal from the pty module),
today's plain lines anywhere else (a pipe), and what the bar summarises."""

import os
import threading

import pytest

from fl_sim.app.progress import LineProgress, LiveProgress, epsilon_text, eval_text, for_stream

ANSI = "\x1b["


def drain(fd: int, sink: list) -> threading.Thread:
    def read():
        while True:
            try:
                data = os.read(fd, 65536)
            except OSError:  # the pty's other side closed (EIO on Linux)
                return
            if not data:
                return
            sink.append(data)
    t = threading.Thread(target=read, daemon=True)
    t.start()
    return t


def play(progress):
    with progress:
        progress("[si_cifg] starting: 24 training clients [not markup]")
        progress.run_started("si_cifg", 1, 3)
        for r in (1, 2, 3):
            row = {"round": r, "accountant": "rdp", "epsilon_rdp": 0.5 * r}
            if r == 2:
                row["eval_accuracy"] = 0.1234
            progress.round_done("si_cifg", row, 3, f"[si_cifg] round {r}/3  one line")


def test_a_terminal_gets_live_bars(monkeypatch):
    monkeypatch.setenv("TERM", "xterm-256color")
    master, slave = os.openpty()
    out: list = []
    reader = drain(master, out)
    with os.fdopen(slave, "w") as tty:
        progress = for_stream(tty)
        assert isinstance(progress, LiveProgress)
        play(progress)
    reader.join(timeout=10)
    os.close(master)
    text = b"".join(out).decode("utf-8", "replace")
    assert ANSI in text and "━" in text                         # a redrawn bar
    assert "3/3" in text and "acc 0.1234" in text and "ε 1.5 (rdp)" in text
    assert "[si_cifg] starting: 24 training clients [not markup]" in text   # messages above it
    assert "one line" not in text                               # no per-round lines


def test_a_pipe_gets_todays_lines_and_no_escapes():
    read_fd, write_fd = os.pipe()
    out: list = []
    reader = drain(read_fd, out)
    with os.fdopen(write_fd, "w") as pipe:
        progress = for_stream(pipe)
        assert type(progress) is LineProgress
        play(progress)
    reader.join(timeout=10)
    os.close(read_fd)
    assert b"".join(out).decode() == ("[si_cifg] starting: 24 training clients [not markup]\n"
                                      + "".join(f"[si_cifg] round {r}/3  one line\n" for r in (1, 2, 3)))


@pytest.mark.parametrize("term", ["dumb", "unknown"])
def test_a_dumb_terminal_gets_lines(monkeypatch, term):
    monkeypatch.setenv("TERM", term)
    master, slave = os.openpty()
    with os.fdopen(slave, "w") as tty:
        assert type(for_stream(tty)) is LineProgress
    os.close(master)


def test_the_bar_summary():
    assert eval_text({"eval_word_top1": 0.2, "eval_accuracy": 0.1}) == "word top-1 0.2000"
    assert eval_text({"eval_accuracy": 0.1}) == "acc 0.1000" and eval_text({"round": 1}) is None
    assert epsilon_text({"accountant": "pld", "epsilon_pld": 2.5, "epsilon_rdp": 3.0}) == "ε 2.5 (pld)"
    assert epsilon_text({"epsilon_rdp": 3.0}) == "ε 3" and epsilon_text({}) is None
