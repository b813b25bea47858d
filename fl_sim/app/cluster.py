"""A local multi-process Flower deployment: one SuperLink and N SuperNodes on 127.0.0.1.

``fl-sim cluster up`` starts Flower's own ``flower-superlink`` and ``flower-supernode``
processes (each in its own session, ports chosen free on 127.0.0.1), gives SuperNode i the
node config ``partition-id=i num-partitions=N`` so it owns a fixed slice of the training
clients, and writes a Flower config (``<dir>/flwr-home/config.toml``) with a SuperLink
connection named ``fl-sim-cluster``. ``fl-sim cluster run`` runs an experiment there
through ``flwr run``; the ServerApp writes the usual results/<experiment>/<run_id>/.

Everything the cluster owns lives in its directory (default ``.cache/fl_sim_cluster``,
git- and FAB-ignored): ``cluster.json`` (PIDs, ports, commands), ``logs/``, the SuperLink
database and ``flwr-home/``. ``down`` ends only the processes recorded there (checked by
PID and start time) and their descendants. Every wait has a deadline.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import tomli_w

from fl_sim.processes import start_ticks as _start_ticks

DEFAULT_DIR = ".cache/fl_sim_cluster"
CONNECTION = "fl-sim-cluster"
HOST = "127.0.0.1"
REPO = Path(__file__).resolve().parents[2]


class ClusterError(RuntimeError):
    """A cluster command cannot proceed (the CLI prints it and exits 2)."""


# --------------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _children(pid: int) -> list[int]:
    out = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            stat = (p / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            out.append(int(p.name))
    return out


def descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        kids = _children(todo.pop())
        out.extend(kids)
        todo.extend(kids)
    return out


def alive(entry: dict) -> bool:
    """Is the process recorded in ``entry`` (pid + start ticks) still the one we started?"""
    return entry.get("pid") is not None and _start_ticks(entry["pid"]) == entry.get("start")


def stop_process(entry: dict, timeout: float = 15.0, sig: int = signal.SIGTERM) -> None:
    """End a recorded process and its descendants: ``sig``, then SIGKILL after ``timeout``."""
    if not alive(entry):
        return
    stop_pids([entry["pid"], *descendants(entry["pid"])], timeout, sig)


def stop_pids(pids: list[int], timeout: float = 15.0, sig: int = signal.SIGTERM) -> None:
    """End these processes (PIDs this program found it started): ``sig``, then SIGKILL after
    ``timeout``. Each is recognised by its start time, so a PID reused meanwhile is spared."""
    targets = [(p, _start_ticks(p)) for p in pids]
    targets = [(p, t) for p, t in targets if t is not None]
    for p, t in targets:
        if _start_ticks(p) == t:
            try:
                os.kill(p, sig)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_start_ticks(p) == t for p, t in targets):
        time.sleep(0.1)
    for p, t in targets:
        if _start_ticks(p) == t:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass


def flower_env(cluster_dir: Path) -> dict[str, str]:
    """Environment for Flower's processes: this venv's executables, a private FLWR_HOME,
    no update check or telemetry (nothing leaves 127.0.0.1)."""
    bin_dir = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
            "FLWR_HOME": str(cluster_dir / "flwr-home"), "FLWR_TELEMETRY_ENABLED": "0",
            "FLWR_DISABLE_UPDATE_CHECK": "1", "TF_CPP_MIN_LOG_LEVEL": "3",
            "PYTHONUNBUFFERED": "1"}


def _spawn(cmd: list[str], log: Path, env: dict) -> dict:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as fh:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT,
                                env=env, cwd=REPO, start_new_session=True)
    return {"pid": proc.pid, "start": _start_ticks(proc.pid), "log": str(log), "cmd": cmd}


def _tail(path: str | Path, n: int = 15) -> str:
    try:
        lines = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(lines[-n:])


def _wait(predicate, timeout: float, what: str, entry: dict | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if entry is not None and not alive(entry):
            raise ClusterError(f"{what}: the process exited; log {entry['log']}:\n{_tail(entry['log'])}")
        time.sleep(0.2)
    log = f"; log {entry['log']}:\n{_tail(entry['log'])}" if entry else ""
    raise ClusterError(f"timed out after {timeout:.0f} s waiting for {what}{log}")


# --------------------------------------------------------------------------- state


def state_path(cluster_dir: Path) -> Path:
    return Path(cluster_dir) / "cluster.json"


def load_state(cluster_dir: Path) -> dict | None:
    path = state_path(cluster_dir)
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def save_state(cluster_dir: Path, state: dict) -> None:
    path = state_path(cluster_dir)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    os.replace(tmp, path)


def superlink_healthy(port: int, tls: dict | None = None) -> bool:
    scheme = "https" if tls else "http"
    url = f"{scheme}://{HOST}:{port}/health"
    try:
        if tls:
            import ssl

            ctx = ssl.create_default_context(cafile=tls["ca"])
            with urllib.request.urlopen(url, timeout=2, context=ctx) as r:
                return r.status == 200
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError):
        return False


def write_flwr_config(cluster_dir: Path, port: int, tls: dict | None) -> Path:
    home = Path(cluster_dir) / "flwr-home"
    home.mkdir(parents=True, exist_ok=True)
    connection: dict = {"address": f"{HOST}:{port}"}
    if tls:
        connection["root-certificates"] = str(tls["ca"])
    else:
        connection["insecure"] = True
    path = home / "config.toml"
    path.write_text(tomli_w.dumps({"superlink": {"default": CONNECTION, CONNECTION: connection}}))
    return path


# --------------------------------------------------------------------------- up / down


def superlink_cmd(state: dict) -> list[str]:
    cmd = ["flower-superlink", "--isolation", "subprocess", "--host", HOST,
           "--port", str(state["superlink"]["port"]),
           "--database", str(Path(state["dir"]) / "superlink.db"),
           "--disable-runtime-dependency-installation"]
    tls = state.get("tls")
    if tls:
        cmd += ["--ssl-ca-certfile", tls["ca"], "--ssl-certfile", tls["server_cert"],
                "--ssl-keyfile", tls["server_key"]]
        if tls.get("auth"):
            cmd += ["--enable-supernode-auth"]
    else:
        cmd += ["--insecure"]
    return cmd


def trainer_dir(state: dict, node: dict) -> str:
    """The SuperNode's own directory for its warm trainer's socket and log (clients/trainer_link.py)."""
    return str(Path(state["dir"]) / "nodes" / str(node["partition_id"]))


def supernode_cmd(state: dict, node: dict) -> list[str]:
    cmd = ["flower-supernode", "--superlink", f"{HOST}:{state['superlink']['port']}",
           "--port", str(node["port"]), "--isolation", "subprocess",
           "--node-config", f"partition-id={node['partition_id']} num-partitions={node['num_partitions']} "
                            f"trainer-dir={json.dumps(trainer_dir(state, node))}"]
    tls = state.get("tls")
    if tls:
        cmd += ["--root-certificates", tls["ca"]]
        if node.get("private_key"):
            cmd += ["--auth-supernode-private-key", node["private_key"]]
    else:
        cmd += ["--insecure"]
    return cmd


def start_superlink(state: dict, timeout: float) -> None:
    """(Re)start the SuperLink recorded in ``state`` (same port and database)."""
    cluster_dir = Path(state["dir"])
    link = state["superlink"]
    link.update(_spawn(superlink_cmd(state), cluster_dir / "logs" / "superlink.log",
                       flower_env(cluster_dir)))
    save_state(cluster_dir, state)
    _wait(lambda: superlink_healthy(link["port"], state.get("tls")), timeout,
          f"the SuperLink on {HOST}:{link['port']}", link)


def start_supernode(state: dict, node: dict, timeout: float) -> None:
    cluster_dir = Path(state["dir"])
    log = cluster_dir / "logs" / f"supernode-{node['partition_id']}.log"
    seen = log.read_text(errors="replace").count("SuperNode ID:") if log.exists() else 0
    node.update(_spawn(supernode_cmd(state, node), log, flower_env(cluster_dir)))
    save_state(cluster_dir, state)
    _wait(lambda: log.read_text(errors="replace").count("SuperNode ID:") > seen, timeout,
          f"SuperNode {node['partition_id']} to connect", node)


def up(cluster_dir: Path, num_supernodes: int, *, timeout: float = 120.0,
       tls: dict | None = None, progress=print) -> dict:
    """Start a SuperLink and ``num_supernodes`` SuperNodes; return the cluster state."""
    cluster_dir = Path(cluster_dir).resolve()
    if num_supernodes < 1:
        raise ClusterError(f"--supernodes {num_supernodes}: expected >= 1")
    old = load_state(cluster_dir)
    if old and any(alive(e) for e in processes(old)):
        raise ClusterError(f"a cluster is already running in {cluster_dir} "
                           f"(fl-sim cluster down --dir {cluster_dir})")
    (cluster_dir / "logs").mkdir(parents=True, exist_ok=True)
    state = {"dir": str(cluster_dir), "connection": CONNECTION, "tls": tls,
             "superlink": {"port": free_port()},
             "supernodes": [{"partition_id": i, "num_partitions": num_supernodes,
                             "port": free_port(),
                             "private_key": (tls or {}).get("node_keys", [None] * num_supernodes)[i]
                             if tls and tls.get("auth") else None}
                            for i in range(num_supernodes)]}
    save_state(cluster_dir, state)
    write_flwr_config(cluster_dir, state["superlink"]["port"], tls)
    try:
        start_superlink(state, timeout)
        progress(f"SuperLink  pid {state['superlink']['pid']}  {HOST}:{state['superlink']['port']}")
        if tls and tls.get("auth"):
            register_supernodes(state, timeout)
        for node in state["supernodes"]:
            start_supernode(state, node, timeout)
            progress(f"SuperNode {node['partition_id']}  pid {node['pid']}  partition "
                     f"{node['partition_id']}/{node['num_partitions']}  runtime port {node['port']}")
    except BaseException:
        down(cluster_dir, progress=lambda s: None)
        raise
    return state


def register_supernodes(state: dict, timeout: float) -> None:
    """SuperNode authentication: register each node's public key with the SuperLink."""
    cluster_dir = Path(state["dir"])
    for node in state["supernodes"]:
        pub = node["private_key"] + ".pub"
        proc = subprocess.run(["flwr", "supernode", "register", pub, CONNECTION],
                              cwd=REPO, env=flower_env(cluster_dir), capture_output=True,
                              text=True, timeout=timeout)
        if proc.returncode != 0:
            raise ClusterError(f"registering {pub} failed:\n{proc.stdout}{proc.stderr}")


def processes(state: dict) -> list[dict]:
    return [*state.get("supernodes", []), state.get("superlink", {})]


def down(cluster_dir: Path, *, timeout: float = 15.0, progress=print) -> int:
    """Stop every process the cluster started; return how many were running."""
    cluster_dir = Path(cluster_dir).resolve()
    state = load_state(cluster_dir)
    if state is None:
        raise ClusterError(f"no cluster in {cluster_dir} (no cluster.json)")
    running = [e for e in processes(state) if alive(e)]
    for entry in running:  # SuperNodes first, then the SuperLink
        stop_process(entry, timeout)
    left = [e["pid"] for e in running if alive(e)]
    if left:
        raise ClusterError(f"processes {left} did not stop")
    for e in processes(state):
        e.pop("pid", None)
    state["stopped"] = True
    save_state(cluster_dir, state)
    progress(f"stopped {len(running)} process(es); logs in {cluster_dir / 'logs'}")
    return len(running)


def status(cluster_dir: Path) -> dict:
    cluster_dir = Path(cluster_dir).resolve()
    state = load_state(cluster_dir)
    if state is None:
        raise ClusterError(f"no cluster in {cluster_dir} (no cluster.json)")
    link = state["superlink"]
    out = {"dir": str(cluster_dir), "superlink": {"pid": link.get("pid"), "port": link["port"],
                                                  "alive": alive(link),
                                                  "healthy": alive(link) and superlink_healthy(link["port"], state.get("tls"))},
           "supernodes": [{"partition_id": n["partition_id"], "pid": n.get("pid"), "alive": alive(n)}
                          for n in state["supernodes"]],
           "tls": bool(state.get("tls"))}
    out["up"] = out["superlink"]["healthy"] and all(n["alive"] for n in out["supernodes"])
    return out


# --------------------------------------------------------------------------- run


def run_config(experiment: str | None, overrides: list[str], rounds: int | None, out: str | None,
               resume: str | None) -> dict:
    """The `flwr run` run config ([tool.flwr.app.config] keys) for an experiment."""
    rc: dict = {"node-partitions": True}
    if resume:
        rc["resume"] = str(Path(resume).resolve())
    else:
        rc["experiment"] = str(Path(experiment).resolve())
        rc["overrides"] = ";".join(overrides)
        rc["num-server-rounds"] = int(rounds or 0)
        if out:
            rc["output-dir"] = str(Path(out).resolve())
        else:  # the experiment's output_dir, relative to where the user runs fl-sim
            from fl_sim.config import load_experiment

            cfg = load_experiment(experiment, overrides)
            rc["output-dir"] = str(Path(cfg.experiment.output_dir).resolve())
    return rc


def write_run_config(cluster_dir: Path, rc: dict) -> Path:
    """``<dir>/run_config.toml`` for ``flwr run --run-config``."""
    path = Path(cluster_dir) / "run_config.toml"
    # Flower's run config holds bools, ints and strings; anything else is sent as its text.
    path.write_text(tomli_w.dumps({k: v if isinstance(v, (bool, int)) else str(v)
                                   for k, v in rc.items()}))
    return path


def run(cluster_dir: Path, rc: dict, *, timeout: float, echo=None) -> tuple[int, str | None]:
    """`flwr run <repo> fl-sim-cluster --stream` with ``rc``; (exit code, run directory)."""
    cluster_dir = Path(cluster_dir).resolve()
    st = status(cluster_dir)
    if not st["superlink"]["healthy"]:
        raise ClusterError(f"the cluster in {cluster_dir} is not up (fl-sim cluster up)")
    rc_file = write_run_config(cluster_dir, rc)
    cmd = ["flwr", "run", str(REPO), CONNECTION, "--stream", "--run-config", str(rc_file)]
    echo = echo or (lambda s: print(s, end="", flush=True))
    proc = subprocess.Popen(cmd, cwd=REPO, env=flower_env(cluster_dir), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    run_dir, finished, run_id = None, False, None
    deadline = time.monotonic() + timeout
    import selectors

    from fl_sim.app import stopping

    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    try:
        while True:
            if time.monotonic() > deadline:
                raise TimeoutError
            if not sel.select(timeout=1.0):
                if proc.poll() is not None:
                    break
                continue
            line = proc.stdout.readline()
            if not line:
                break
            echo(line)
            if m := re.search(r"Successfully started run (\d+)", line):
                run_id = int(m.group(1))
            if line.startswith("fl-sim: ") and " -> " in line:  # the ServerApp's first line
                run_dir = line.rsplit(" -> ", 1)[1].strip()
                stopping.resume_hint = f"continue with: fl-sim cluster run --resume {run_dir}"
            if line.startswith("Run directory: "):  # its last line
                run_dir, finished = line.split(": ", 1)[1].strip(), True
        code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    except (TimeoutError, subprocess.TimeoutExpired):
        stop_process({"pid": proc.pid, "start": _start_ticks(proc.pid)}, 5)
        proc.wait(timeout=10)
        echo(f"fl-sim: flwr run did not finish within {timeout:.0f} s (--timeout)\n")
        return 124, run_dir
    except KeyboardInterrupt:  # SIGINT / SIGTERM (fl_sim.app.stopping): stop the run too
        stop_run(cluster_dir, run_id, proc)
        raise
    finally:
        sel.close()
    if code == 0 and not finished:
        code = 1  # the ServerApp stopped before its last line (flwr may still exit 0)
    return code, run_dir


def stop_run(cluster_dir: Path, run_id: int | None, proc: subprocess.Popen) -> None:
    """Stop a run on the cluster, then the `flwr run --stream` that follows it.

    The ServerApp runs in the SuperLink's processes, not under `flwr run` (which is in a
    session of its own, so a terminal's Ctrl-C does not reach it): `flwr stop` asks the
    SuperLink to end it. Its checkpoints are atomic, so the run resumes from the last one.
    """
    if run_id is not None:
        try:
            subprocess.run(["flwr", "stop", str(run_id), CONNECTION], cwd=REPO,
                           env=flower_env(cluster_dir), capture_output=True, timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            pass  # the SuperLink is gone or hung: nothing else to stop it with from here
    stop_process({"pid": proc.pid, "start": _start_ticks(proc.pid)}, 5)


def aborted_reason(run_dir: str | None) -> str | None:
    """The named reason a finished run aborted (server.below_min_clients = 'abort')."""
    path = Path(run_dir or "") / "summary.json"
    if not run_dir or not path.is_file():
        return None
    for final in json.loads(path.read_text())["models"].values():
        reason = final.get("stopped_reason") or ""
        if reason.startswith("aborted"):
            return reason
    return None


# --------------------------------------------------------------------------- CLI


def add_parser(sub) -> None:
    import argparse

    p = sub.add_parser(
        "cluster", formatter_class=argparse.RawDescriptionHelpFormatter,
        help="a local Flower deployment: SuperLink + N SuperNodes on 127.0.0.1",
        description="Start, inspect, use and stop a local Flower deployment (one "
                    "flower-superlink and N flower-supernode processes on 127.0.0.1). "
                    "SuperNode i owns partition i of N of the training clients. "
                    "See docs/deployment.md.",
        epilog="examples:\n  fl-sim cluster up --supernodes 2\n  fl-sim cluster status\n"
               "  fl-sim cluster run experiments/smoke.toml --rounds 2\n  fl-sim cluster down\n")
    csub = p.add_subparsers(dest="cluster_command", metavar="ACTION")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--dir", default=DEFAULT_DIR,
                        help=f"cluster state, logs and Flower home (default {DEFAULT_DIR})")
    u = csub.add_parser("up", parents=[common], help="start the SuperLink and SuperNodes")
    u.add_argument("--supernodes", "-n", type=int, default=2, help="number of SuperNodes (default 2)")
    u.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for each process")
    u.add_argument("--tls", metavar="CERT_DIR",
                   help="TLS with certificates from scripts/gen_certs.sh CERT_DIR (plus SuperNode "
                        "authentication when CERT_DIR has node keys)")
    csub.add_parser("down", parents=[common], help="stop every process of the cluster")
    csub.add_parser("status", parents=[common], help="show the cluster's processes (exit 1 if not all up)")
    r = csub.add_parser("run", parents=[common], help="run an experiment on the cluster via flwr run")
    r.add_argument("experiment", nargs="?", help="experiment TOML file")
    r.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    r.add_argument("--rounds", type=int, help="shorthand for --set experiment.rounds=N")
    r.add_argument("--out", help="root folder for run directories (default: experiment.output_dir)")
    r.add_argument("--resume", metavar="RUN_DIR", help="continue a stopped run from its last checkpoint")
    r.add_argument("--timeout", type=float, default=6 * 3600.0, help="seconds before the run is stopped")


def tls_from_dir(cert_dir: str) -> dict:
    d = Path(cert_dir).resolve()
    tls = {"ca": str(d / "ca.crt"), "server_cert": str(d / "server.pem"),
           "server_key": str(d / "server.key")}
    for k, v in tls.items():
        if not Path(v).is_file():
            raise ClusterError(f"--tls {cert_dir}: missing {Path(v).name} (make it with scripts/gen_certs.sh {cert_dir})")
    keys = sorted((d / "supernodes").glob("node-*.key"), key=lambda p: int(p.stem.split("-")[-1]))
    if keys:
        tls["auth"] = True
        tls["node_keys"] = [str(k) for k in keys]
    return tls


def cmd_cluster(args) -> int:
    from fl_sim.config import ConfigError

    def err(msg: str) -> int:
        print(f"fl-sim: error: {msg}", file=sys.stderr)
        return 2

    action = getattr(args, "cluster_command", None)
    if action is None:
        return err("cluster needs an action: up, down, status or run")
    try:
        if action == "up":
            tls = tls_from_dir(args.tls) if args.tls else None
            if tls and tls.get("auth") and len(tls["node_keys"]) < args.supernodes:
                return err(f"--tls {args.tls}: {len(tls['node_keys'])} SuperNode keys for "
                           f"--supernodes {args.supernodes}")
            up(Path(args.dir), args.supernodes, timeout=args.timeout, tls=tls)
            print(f"cluster up in {Path(args.dir).resolve()}; run with: fl-sim cluster run EXPERIMENT")
            return 0
        if action == "down":
            down(Path(args.dir))
            return 0
        if action == "status":
            st = status(Path(args.dir))
            link = st["superlink"]
            print(f"SuperLink  pid {link['pid']}  {HOST}:{link['port']}  "
                  f"{'up' if link['healthy'] else 'DOWN'}{'  TLS' if st['tls'] else ''}")
            for n in st["supernodes"]:
                print(f"SuperNode {n['partition_id']}  pid {n['pid']}  {'up' if n['alive'] else 'DOWN'}")
            return 0 if st["up"] else 1
        if action == "run":
            if args.resume:
                if args.experiment or args.overrides or args.rounds or args.out:
                    return err("--resume takes only RUN_DIR: the run keeps its own config")
                if not (Path(args.resume) / "config.resolved.toml").is_file():
                    return err(f"{args.resume}: not a run directory (no config.resolved.toml)")
                from fl_sim.app import stopping
                from fl_sim.app.resume import ResumeError, already_complete, check_resumable
                from fl_sim.config import load_experiment

                cfg = load_experiment(Path(args.resume) / "config.resolved.toml")
                if done := already_complete(Path(args.resume), cfg):
                    print(f"fl-sim: {args.resume} is already complete ({done}); nothing to do")
                    return 0
                try:
                    check_resumable(Path(args.resume), cfg)
                except ResumeError as exc:
                    return err(str(exc))
                stopping.resume_hint = f"continue with: fl-sim cluster run --resume {args.resume}"
            elif not args.experiment:
                return err("cluster run needs an EXPERIMENT file or --resume RUN_DIR")
            else:
                # What `fl-sim run` checks before it starts Flower (the data, DP settings that
                # cannot work, the pruning schedule, tracking): exit 2 here, not a ServerApp
                # crash on the cluster.
                from fl_sim.app.preflight import DataProblem, check_data_early
                from fl_sim.config import load_experiment

                extra = [f"experiment.rounds={args.rounds}"] if args.rounds else []
                try:
                    check_data_early(load_experiment(args.experiment, [*args.overrides, *extra]))
                except DataProblem as exc:
                    return err(str(exc))
            rc = run_config(args.experiment, list(args.overrides), args.rounds, args.out, args.resume)
            code, run_dir = run(Path(args.dir), rc, timeout=args.timeout)
            reason = aborted_reason(run_dir) if code == 0 else None
            if reason:
                print(f"fl-sim: run {reason}; results: {run_dir}", file=sys.stderr)
                return 1
            if code != 0:
                print(f"fl-sim: cluster run failed (exit {code})"
                      + (f"; partial results (resumable with --resume): {run_dir}" if run_dir else ""),
                      file=sys.stderr)
                return 1
            return 0
    except (ClusterError, ConfigError) as exc:
        return err(str(exc))
    return err(f"unknown cluster action {action!r}")
