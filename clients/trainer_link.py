"""The ClientApp's side of the warm per-node trainer (clients/trainer_process.py).

In a Flower deployment every message runs in a fresh ``flwr-clientapp`` process. With
``deployment.warm_trainer`` (the default) such a process does not import TensorFlow: it
connects to the node's trainer, starting it on the node's first message, sends the global
weights and the client ids, and turns the answer into the same reply the in-process path
builds. The trainer stays up between messages, so only the first one pays for the import,
the corpus, the model build and the trace.

Where: ``<node dir>/t-<key>.sock`` (0600, in a 0700 directory owned by this user), with a
lock file and the trainer's log next to it. The node dir is the node config's
``trainer-dir`` (``fl-sim cluster up`` gives each SuperNode its own) or
``<tmp>/fl-sim-<uid>/node-<node id>``. The key hashes the experiment TOML, the app's code
directory (a FAB's install directory names its hash) and the Python executable, so a new
experiment or new code gets a new trainer; starting one asks the node's other trainers to
exit.

Failures: if the trainer cannot be reached or started, or dies mid-message, the caller
gets ``TrainerUnavailable`` and trains in its own process (the same numbers, at the old
cost); a trainer that does not answer within ``server.round_timeout`` is killed and the
message fails with a message saying so. Errors the trainer reports for the message itself
(a client of another partition, a bad config) are raised as they would be in-process.
"""

from __future__ import annotations

import fcntl
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from clients.trainer_ids import APP_ROOT, trainer_key
from fl_sim.processes import start_ticks
from clients.wire import WireError, recv_frame, send_frame
from fl_sim.updates import NodeSum

__all__ = ["TrainerUnavailable", "connect_or_start", "stop_trainers", "train", "trainer_key"]
#: A Unix socket path longer than this does not fit in sockaddr_un (108 bytes with the NUL).
MAX_SOCKET_PATH = 107
#: Seconds a new trainer may take to listen (it imports numpy and flwr, not TensorFlow).
START_TIMEOUT = 120.0


class TrainerUnavailable(RuntimeError):
    """The warm trainer could not do this message's work; train in this process instead."""


def per_message_process() -> bool:
    """Is this a ``flwr-clientapp`` process, started by Flower for one message?

    Flower's own exit handling uses the same test. In the simulation runtime the ClientApp
    runs inside a long-lived Ray worker, which is warm already.
    """
    return os.path.basename(sys.argv[0] if sys.argv else "").startswith("flwr-clientapp")


def node_dir(context) -> Path:
    configured = context.node_config.get("trainer-dir") if context.node_config else None
    if configured:
        return Path(str(configured)).expanduser().resolve()
    return Path(tempfile.gettempdir()) / f"fl-sim-{os.getuid()}" / f"node-{context.node_id}"


def private_dir(path: Path) -> Path:
    """``path`` created 0700; refused if another user owns it or others may write to it."""
    for d in reversed([path, *path.parents]):
        if not d.exists():
            try:
                d.mkdir(mode=0o700)
            except FileExistsError:
                pass
    st = path.stat()
    if st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise TrainerUnavailable(f"trainer directory {path} must be owned by uid {os.getuid()} "
                                 f"with mode 0700 (it is uid {st.st_uid}, mode {st.st_mode & 0o777:o})")
    return path


def _ancestors_to_watch() -> list[tuple[int, int]]:
    """(pid, start ticks) of this process's parent (the SuperExec) and its ancestors up to
    the SuperNode: the trainer exits as soon as one of them is gone."""
    out, pid = [], os.getppid()
    for _ in range(4):
        ticks = start_ticks(pid)
        if pid <= 1 or ticks is None:
            break
        out.append((pid, ticks))
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            break
        if b"flower-supernode" in cmdline:
            break
        pid = int(stat.rsplit(")", 1)[1].split()[1])
    return out


def _peer_pid(sock: socket.socket) -> int:
    pid, uid, _ = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                      struct.calcsize("3i")))
    if uid != os.getuid():
        raise TrainerUnavailable(f"the trainer socket's peer runs as uid {uid}, not {os.getuid()}")
    return pid


def _connect(path: Path, timeout: float | None = None, *, clean: bool = True) -> socket.socket | None:
    """A connection to the trainer at ``path``; None if nobody listens there.

    A trainer renames its socket into place only once it listens, so a refused connection
    means a dead trainer: with ``clean`` (the caller holds that key's lock) its stale
    socket file is removed.
    """
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(str(path))
        return s
    except (ConnectionRefusedError, FileNotFoundError):
        s.close()
        if clean:
            path.unlink(missing_ok=True)
        return None
    except OSError:
        s.close()
        raise


def _tail(path: Path, n: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


def stop_trainers(directory: Path, keep: Path | None = None) -> int:
    """Ask the trainers in ``directory`` (but ``keep``) to exit; how many were asked.

    A new experiment's trainer retires the node's others: each holds a model and a corpus.
    """
    asked = 0
    for other in Path(directory).glob("t-*.sock"):
        if other == keep:
            continue
        try:
            s = _connect(other, timeout=2.0, clean=False)
            if s is not None:
                with s:
                    send_frame(s, {"op": "shutdown"})
                asked += 1
        except OSError:
            pass
    return asked


def _spawn(directory: Path, key: str, sock_path: Path, idle_timeout: float) -> subprocess.Popen:
    watch = ",".join(f"{p}:{t}" for p, t in _ancestors_to_watch())
    # The app's own code first, as Flower puts it for the ClientApp (not ``-m``, which would
    # put the working directory there); the working directory and environment are this
    # process's, so relative data paths resolve as they would in-process.
    boot = ("import sys; sys.path[0] = sys.argv.pop(1); "
            "from clients.trainer_process import main; sys.exit(main())")
    cmd = [sys.executable, "-c", boot, str(APP_ROOT), "--socket", str(sock_path),
           "--key", key, "--idle-timeout", repr(float(idle_timeout)), "--watch", watch]
    log_path = directory / f"t-{key}.log"
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        # Its own session: it outlives this per-message process (and its process group).
        return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=fd, stderr=fd,
                                start_new_session=True, close_fds=True)
    finally:
        os.close(fd)


def connect_or_start(directory: Path, key: str, idle_timeout: float) -> tuple[socket.socket, bool]:
    """(connection to this experiment's trainer, whether it was started now)."""
    directory = private_dir(directory)
    sock_path = directory / f"t-{key}.sock"
    if len(str(sock_path)) > MAX_SOCKET_PATH:
        raise TrainerUnavailable(f"socket path {sock_path} is longer than {MAX_SOCKET_PATH} bytes; "
                                 "give the SuperNode a shorter node config trainer-dir")
    lock_fd = os.open(directory / f"t-{key}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        # One starter per node and key: two messages arriving at once must not start two.
        fcntl.flock(lock_fd, fcntl.LOCK_EX)
        s = _connect(sock_path)
        if s is not None:
            return s, False
        stop_trainers(directory, keep=sock_path)
        proc = _spawn(directory, key, sock_path, idle_timeout)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if sock_path.exists():
                s = _connect(sock_path)
                if s is not None:
                    return s, True
            if proc.poll() is not None:
                raise TrainerUnavailable(f"the warm trainer exited with code {proc.returncode} "
                                         f"before listening; log {directory / f't-{key}.log'}:\n"
                                         + _tail(directory / f"t-{key}.log"))
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        raise TrainerUnavailable(f"the warm trainer did not listen on {sock_path} within "
                                 f"{START_TIMEOUT:.0f} s")
    except OSError as exc:
        raise TrainerUnavailable(f"warm trainer in {directory}: {exc}") from exc
    finally:
        os.close(lock_fd)


def train(context, experiment_toml: str, cfg, server_round: int, client_ids: list[str],
          global_weights: list, check_partition: bool, clip_norm: float | None = None
          ) -> tuple[list | NodeSum, list, dict]:
    """``(results, failures, timing)`` of ``train_clients`` run by the node's warm trainer
    (results as ``clients.app.node_results`` gives them)."""
    key = trainer_key(experiment_toml)
    t0 = time.perf_counter()
    sock, started = connect_or_start(node_dir(context), key, cfg.deployment.trainer_idle_timeout)
    t1 = time.perf_counter()
    node_config = None
    if check_partition:
        node_config = {k: context.node_config[k] for k in ("partition-id", "num-partitions")
                       if k in context.node_config}
    with sock:
        pid = _peer_pid(sock)
        # The server stops waiting for this node after round_timeout: so do we, and a trainer
        # that has not answered by then is stuck, so it is ended (the next message starts anew).
        sock.settimeout(cfg.server.round_timeout)
        try:
            send_frame(sock, {"op": "train", "experiment": experiment_toml,
                              "server_round": server_round, "client_ids": list(client_ids),
                              "node_config": node_config, "clip_norm": clip_norm}, global_weights)
            header, arrays = recv_frame(sock)
        except socket.timeout:
            _kill(pid)
            raise RuntimeError(f"the warm trainer (pid {pid}) did not answer round {server_round} "
                               f"within server.round_timeout = {cfg.server.round_timeout:g} s; it "
                               "was stopped") from None
        except (WireError, OSError) as exc:
            raise TrainerUnavailable(f"the warm trainer (pid {pid}) died during round "
                                     f"{server_round}: {exc}") from exc
    if not header.get("ok"):
        error = header.get("error", "unknown error")
        raise (ValueError if header.get("error_type") == "ValueError" else RuntimeError)(
            f"warm trainer: {error}")
    if "node_sum" in header:
        clip = header.get("node_sum_clip")
        results = NodeSum([(str(c), m, p) for c, m, p in header["node_sum"]], arrays or None,
                          None if clip is None else float(clip),
                          None if clip is None else [float(n) for n in header["node_sum_norms"]])
    else:
        results, i = [], 0
        for cid, n, metrics in header["results"]:
            results.append((str(cid), arrays[i:i + n], metrics))
            i += n
    failures = [(str(c), str(r)) for c, r in header["failures"]]
    timing = {"connect_s": t1 - t0, "started": started, "build_s": header["build_s"],
              "train_s": header["train_s"], "trainer_pid": pid}
    return results, failures, timing


def _kill(pid: int) -> None:
    if start_ticks(pid) is not None:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
