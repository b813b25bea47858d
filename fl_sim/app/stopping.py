"""Stopping on SIGINT / SIGTERM: within seconds, at any point, no traceback, resumable.

Python runs signal handlers in the main thread only. During ``fl-sim run`` that thread is
inside Flower's simulation runtime, while the ServerApp runs in a thread Flower starts
(non-daemon, so the interpreter waits for it at exit). Letting KeyboardInterrupt unwind
the runtime shut Ray down but left the ServerApp thread waiting in ``send_and_receive``
for ``server.round_timeout``: Ctrl-C printed the resume hint and then hung. And once Ray
is gone every in-flight client comes back as an error reply, which the round loop would
have logged and checkpointed as a skipped round. So the handler:

1. sets :data:`STOP` before anything else. The ServerApp checks it (:func:`check`) before
   it logs or checkpoints, and :func:`send_and_receive` gives up waiting on it, so a round
   cut short is never recorded and a resume repeats it exactly;
2. raises :class:`Interrupted` (a KeyboardInterrupt, which Flower's ``except Exception``
   blocks let through) in the main thread, which unwinds Flower's runtime (it shuts Ray
   down) up to the CLI;
3. on a second signal, prints the resume hint and exits at once.

:func:`finish` then lets the ServerApp thread reach its next check, shuts Ray down if the
signal came before Flower could, and exits with 128 + the signal number at once.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from typing import Callable, NoReturn

#: Set by the first SIGINT / SIGTERM; the ServerApp stops at its next check.
STOP = threading.Event()

#: How long :func:`finish` waits for the ServerApp and Flower's threads before it exits
#: without them. They stop within a poll interval unless busy in TensorFlow (an
#: evaluation), whose result is discarded anyway.
GRACE_S = 5.0

#: What to do next, printed on exit: a string, or a function returning one (called after
#: the ServerApp stopped, so it can look at what the run left).
resume_hint: str | Callable[[], str] = ""

_signals_seen = 0


class Interrupted(KeyboardInterrupt):
    """The main thread's view of SIGINT / SIGTERM."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class RunStopped(Exception):
    """Raised in the ServerApp thread at a check after STOP was set."""


def check() -> None:
    if STOP.is_set():
        raise RunStopped("interrupted")


def _message(signum: int) -> str:
    name = signal.Signals(signum).name
    hint = resume_hint() if callable(resume_hint) else resume_hint
    return f"\nfl-sim: interrupted ({name})" + (f"; {hint}" if hint else "") + "\n"


def _handler(signum, frame) -> None:
    global _signals_seen
    _signals_seen += 1
    STOP.set()
    # Flower logs every reply that fails once Ray is gone, with its traceback; the run is
    # being stopped on purpose, so none of that is news.
    logging.getLogger("flwr").setLevel(logging.CRITICAL + 1)
    if _signals_seen > 1:  # the user insists: no more cleanup
        try:
            os.write(2, _message(signum).encode())
        except Exception:  # noqa: BLE001 - exiting regardless
            pass
        os._exit(128 + signum)
    raise Interrupted(signum)


def install() -> None:
    """Route SIGINT and SIGTERM to :class:`Interrupted` (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _handler)


def keep_through_ray() -> None:
    """Stop ``ray.init`` from replacing the SIGTERM handler installed by :func:`install`.

    Ray's driver setup sets its own (``sys.exit``), which unwound the main thread and left
    the ServerApp thread running, the same hang as before. Ray's processes are still
    stopped: Flower's runtime shuts Ray down as :class:`Interrupted` unwinds it, and
    :func:`finish` does if Flower had not started yet. Without fl_sim's handler (a test
    calling ``simulate``) Ray keeps its own.
    """
    import ray._private.utils as ray_utils

    original = getattr(ray_utils.set_sigterm_handler, "__wrapped__", ray_utils.set_sigterm_handler)

    def set_sigterm_handler(handler):
        if signal.getsignal(signal.SIGTERM) is not _handler:
            original(handler)

    set_sigterm_handler.__wrapped__ = original
    ray_utils.set_sigterm_handler = set_sigterm_handler


#: How often a deployment's ServerApp asks the SuperLink for replies: first after 0.05 s,
#: then each wait 1.5 times longer, at most 1 s. Flower's own ``send_and_receive`` sleeps 3 s
#: between pulls (1.5 s added to an average round); a fixed short interval costs the
#: SuperLink CPU for the whole round (measured: 0.2 s pulls, 2.5 CPU-s of SuperLink per
#: smoke round on this 2-core machine), this stays within 1 s of a reply at ~1 pull/s.
DEPLOY_PULL_FIRST_S, DEPLOY_PULL_GROWTH, DEPLOY_PULL_MAX_S = 0.05, 1.5, 1.0


def send_and_receive(grid, messages, *, timeout: float):
    """``grid.send_and_receive`` that stops waiting once :data:`STOP` is set.

    :data:`STOP` only for the simulation's in-memory grid (the one with ``pull_interval``);
    a deployment's ServerApp is stopped by Flower (``flwr stop`` ends its process), and its
    grid is polled with a growing interval (:data:`DEPLOY_PULL_FIRST_S` ...).
    """
    simulation = hasattr(grid, "pull_interval")
    pending = set(grid.push_messages(messages))
    end = time.monotonic() + timeout
    replies = []
    wait = DEPLOY_PULL_FIRST_S
    while pending and time.monotonic() < end:
        if simulation:
            check()
        got = list(grid.pull_messages(pending))
        replies.extend(got)
        pending.difference_update(m.metadata.reply_to_message_id for m in got)
        if pending:
            if simulation:
                time.sleep(grid.pull_interval)
            else:
                time.sleep(max(0.0, min(wait, end - time.monotonic())))
                wait = min(wait * DEPLOY_PULL_GROWTH, DEPLOY_PULL_MAX_S)
    if simulation:
        check()
    return replies


def finish(exc: Interrupted) -> NoReturn:
    """After :class:`Interrupted` reached the CLI: clean up, print the hint, exit 128 + N."""
    STOP.set()
    if "ray" in sys.modules:  # interrupted before Flower started (or finished) its backend
        import ray

        if ray.is_initialized():
            ray.shutdown()
    deadline = time.monotonic() + GRACE_S
    for th in threading.enumerate():
        if th is not threading.current_thread() and not th.daemon:
            th.join(timeout=max(0.0, deadline - time.monotonic()))
    sys.stderr.write(_message(exc.signum))
    sys.stderr.flush()
    # No normal interpreter exit: it would wait for a thread still busy (TensorFlow
    # mid-evaluation, whose work is discarded anyway), and even with none, TensorFlow's and
    # Ray's native teardown took 3-8 s more (measured: no Python frame runs meanwhile).
    # Everything a run writes is flushed and fsynced as it goes, and Ray is down.
    sys.stdout.flush()
    os._exit(exc.exit_code)
