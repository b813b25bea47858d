"""The warm per-node trainer: one long-lived process that trains a SuperNode's clients.

Flower's deployment runtime starts a fresh ``flwr-clientapp`` process for every message, so
without this each round on each node would import TensorFlow, load the corpus, build the
model and trace its local pass again. The ClientApp (clients/app.py, via
clients/trainer_link.py) starts this process on its first message and hands each train
message's work to it over a Unix socket; Flower still carries every message, TLS and node
authentication. The work runs through the very functions the in-process path runs
(``worker_state``, ``check_ownership``, ``train_clients``), so the numbers are the same.

    clients.trainer_process.main(): --socket PATH --key KEY --idle-timeout S --watch PID:START,...

It serves one request at a time (a node trains its clients in sequence either way), accepts
connections only from its own user (SO_PEERCRED), and exits, removing its socket, when a
watched process (its SuperExec, its SuperNode) is gone, after ``--idle-timeout`` seconds
without a request, or on a ``shutdown`` request.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import struct
import sys
import threading
import time
from pathlib import Path

from clients.trainer_ids import trainer_key
from fl_sim.processes import start_ticks
from clients.wire import WireError, recv_frame, send_frame

log = logging.getLogger("fl_sim.trainer")
#: Seconds between checks that the watched processes are alive (and of the idle clock).
POLL_S = 1.0


class TrainerServer:
    def __init__(self, path: Path, key: str, idle_timeout: float, watch: list[tuple[int, int]]):
        self.path, self.key, self.idle_timeout, self.watch = path, key, idle_timeout, watch
        self.last_active = time.monotonic()
        # Bound and listening under a temporary name, then renamed into place: whoever finds
        # the socket file can connect (a refused connection means a dead trainer), and it is
        # created 0600, with no window of wider permissions.
        tmp = path.with_name(f"{path.name}.{os.getpid()}.new")
        old = os.umask(0o177)
        try:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            tmp.unlink(missing_ok=True)
            self.sock.bind(str(tmp))
        finally:
            os.umask(old)
        os.chmod(tmp, 0o600)
        self.sock.listen(16)
        self.inode = tmp.stat().st_ino
        os.replace(tmp, path)  # over a stale socket: the starter holds the lock and found it dead
        self.sock.settimeout(POLL_S)

    def cleanup(self) -> None:
        """Remove the socket file if it is still ours (a successor may have replaced it)."""
        try:
            if self.path.stat().st_ino == self.inode:
                self.path.unlink()
        except OSError:
            pass

    def watched_gone(self) -> bool:
        return any(start_ticks(pid) != ticks for pid, ticks in self.watch)

    def _watchdog(self) -> None:
        # A thread, because a request (a whole round's training) can run for minutes: the
        # trainer must not outlive its SuperNode by that long.
        while True:
            time.sleep(POLL_S)
            if self.watched_gone():
                log.info("trainer %s: the SuperNode is gone; exiting", self.key)
                self.cleanup()
                os._exit(0)

    def serve(self) -> None:
        threading.Thread(target=self._watchdog, daemon=True).start()
        log.info("trainer %s: pid %d listening on %s", self.key, os.getpid(), self.path)
        while True:
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                if time.monotonic() - self.last_active > self.idle_timeout:
                    log.info("trainer %s: idle for %.0f s; exiting", self.key, self.idle_timeout)
                    return
                continue
            with conn:
                conn.settimeout(None)
                if not self._same_user(conn):
                    continue
                try:
                    if not self.handle(conn):
                        return
                except (WireError, OSError) as exc:  # the ClientApp went away: next request
                    log.warning("trainer %s: connection lost: %s", self.key, exc)
                self.last_active = time.monotonic()

    @staticmethod
    def _same_user(conn: socket.socket) -> bool:
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        _pid, uid, _gid = struct.unpack("3i", creds)
        return uid == os.getuid()

    def handle(self, conn: socket.socket) -> bool:
        """Serve one request; False when the trainer should exit."""
        header, arrays = recv_frame(conn)
        op = header.get("op")
        if op == "ping":
            send_frame(conn, {"ok": True, "pid": os.getpid(), "key": self.key})
            return True
        if op == "shutdown":
            log.info("trainer %s: shutdown requested", self.key)
            try:
                send_frame(conn, {"ok": True, "pid": os.getpid()})
            except OSError:
                pass  # the asker need not wait for the answer
            return False
        if op != "train":
            send_frame(conn, {"ok": False, "error": f"unknown request {op!r}"})
            return True
        try:
            reply, out = self.train(header, arrays)
        except Exception as exc:  # noqa: BLE001 - the message's failure, reported to the ClientApp
            log.warning("trainer %s: message failed", self.key, exc_info=True)
            send_frame(conn, {"ok": False, "error": f"{type(exc).__name__}: {exc}",
                              "error_type": type(exc).__name__})
            return True
        send_frame(conn, reply, out)
        return True

    def train(self, header: dict, arrays: list) -> tuple[dict, list]:
        from types import SimpleNamespace

        from clients.app import check_ownership, node_results, train_clients, worker_state
        from fl_sim.updates import NodeSum

        toml = header["experiment"]
        if trainer_key(toml) != self.key:
            raise ValueError(f"this trainer serves experiment key {self.key}, not {trainer_key(toml)}")
        log.info("trainer %s: round %s: %d clients", self.key, header["server_round"],
                 len(header["client_ids"]))
        t0 = time.perf_counter()
        cfg, corpus, trainer = worker_state(toml)
        t1 = time.perf_counter()
        client_ids = [str(c) for c in header["client_ids"]]
        if header.get("node_config") is not None:
            check_ownership(client_ids, corpus.train_client_ids,
                            SimpleNamespace(node_config=header["node_config"]))
        results, failures = train_clients(cfg, corpus, trainer, client_ids, arrays,
                                          int(header["server_round"]))
        clip = header.get("clip_norm")
        results = node_results(cfg, results, arrays, None if clip is None else float(clip))
        t2 = time.perf_counter()
        reply = {"ok": True, "pid": os.getpid(), "build_s": t1 - t0, "train_s": t2 - t1,
                 "failures": [list(f) for f in failures]}
        if isinstance(results, NodeSum):  # deployment.node_sums: one update for the node
            reply["node_sum"] = [[cid, metrics, problem] for cid, metrics, problem in results.clients]
            if results.clip_norm is not None:  # under DP: clipped to the round's C
                reply["node_sum_clip"], reply["node_sum_norms"] = results.clip_norm, results.norms
            return reply, list(results.total or [])
        reply["results"] = [[cid, len(delta), metrics] for cid, delta, metrics in results]
        return reply, [d for _, delta, _ in results for d in delta]


def parse_watch(text: str) -> list[tuple[int, int]]:
    out = []
    for item in filter(None, text.split(",")):
        pid, ticks = item.split(":")
        out.append((int(pid), int(ticks)))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m clients.trainer_process")
    p.add_argument("--socket", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--idle-timeout", type=float, required=True)
    p.add_argument("--watch", default="", help="PID:START_TICKS,... to outlive by at most a second")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    server = TrainerServer(Path(args.socket), args.key, args.idle_timeout, parse_watch(args.watch))
    try:
        server.serve()
    finally:
        server.cleanup()
    # Straight out: TensorFlow's interpreter teardown took a minute on a loaded machine, and
    # nothing of this process needs it (the socket is gone, the log is flushed).
    logging.shutdown()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
