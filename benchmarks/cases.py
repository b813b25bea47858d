"""One measurement per process: ``python -m benchmarks.cases '<json>'``.

Cases (the JSON's ``kind``):

``pure``
    The arithmetic floor: the clients' local SGD steps run back-to-back in this process
    by one ``LocalTrainer`` (one compiled ``tf.function`` pass per client, the same one
    fl_sim's ClientApp runs, XLA-compiled when the config's ``client.xla`` says so, as in
    the simulation it is compared with), on the same cohorts (same seeded sampler, same
    rounds) and the same batches. Data preparation and the trainer's warm-up (tracing,
    XLA compile) are done before the clock starts; the clock covers assigning the global
    weights and the local pass, per round.
``xla``
    The same cohorts' local passes by two trainers in one process, one with
    ``client.xla = false`` (TF graph) and one with ``client.xla = true``, alternating
    round by round (and which goes first), so load changes hit both; plus each one's build
    time (trace, and XLA compile), the threads XLA added, and which threads did the work.
``sim``
    ``fl_sim.app.simulation.simulate`` (what ``fl-sim run`` calls) on the same config, with
    one extra round and evaluation only at the end, so rounds 1..R carry no evaluation;
    round times are the server's own ``round_time_s`` (sampling, messages, training,
    aggregation, checkpoint). Optionally samples the peak RSS of the process tree.
``flower``
    The same experiment as Flower's TensorFlow examples write it (benchmarks/flower_stock.py).

Each case prints one ``BENCH-RESULT {json}`` line.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import Poller, children_by_parent, emit, proc_stat, run_rows

PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def load_cfg(case: dict):
    from fl_sim.config import load_experiment

    return load_experiment(case["experiment"], list(case.get("overrides", [])))


# --------------------------------------------------------------------------- pure


def pure(case: dict) -> dict:
    import tensorflow as tf

    from fl_sim.malloc import tune_malloc

    tune_malloc()  # as every fl_sim process that trains (clients/app.py)

    # The same TF settings as a simulation worker (clients/app.py): one thread, deterministic ops.
    threads = int(os.environ.get("FL_SIM_TF_THREADS", "1"))
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    tf.config.experimental.enable_op_determinism()

    from clients.trainer import LocalTrainer
    from fl_sim.data import load_corpus
    from fl_sim.sampling import sample_clients

    cfg = load_cfg(case)
    rounds = int(case["rounds"])
    corpus = load_corpus(cfg.data, cfg.experiment.seed)
    trainer = LocalTrainer(cfg, corpus.vocab.size, corpus.seq_len)
    weights = trainer.get_weights()
    plan = []
    for rnd in range(1, rounds + 1):
        cohort = sample_clients(corpus.train_client_ids, cfg.server.clients_per_round,
                                cfg.experiment.seed, rnd)
        plan.append([tf.constant(trainer.batches_for(corpus.client_train(cid), rnd, cid))
                     for cid in cohort])
    times, cpu, steps = [], [], []
    for batches in plan:
        t0, c0 = time.perf_counter(), time.process_time()
        for b in batches:
            trainer.set_weights(weights)
            trainer._local_pass(b)
        trainer.variables[0].numpy()  # make sure the last pass finished
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        steps.append(int(sum(int(b.shape[0]) for b in batches)))
    return {"round_times_s": [round(t, 4) for t in times], "round_cpu_s": [round(c, 3) for c in cpu],
            "steps_per_round": steps}


# --------------------------------------------------------------------------- xla


def _threads() -> dict[int, tuple[str, float]]:
    """This process's threads: tid -> (name, CPU seconds so far)."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            name = Path(f"/proc/self/task/{tid}/comm").read_text().strip()
            f = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[int(tid)] = (name, (int(f[11]) + int(f[12])) / tick)
    return out


def xla(case: dict) -> dict:
    import dataclasses

    import tensorflow as tf

    from fl_sim.malloc import tune_malloc

    tune_malloc()
    threads = int(os.environ.get("FL_SIM_TF_THREADS", "1"))
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    tf.config.experimental.enable_op_determinism()

    from clients.trainer import LocalTrainer
    from fl_sim.data import load_corpus
    from fl_sim.sampling import sample_clients

    cfg = load_cfg(case)
    corpus = load_corpus(cfg.data, cfg.experiment.seed)
    trainers, build_s, compile_s, thread_counts = {}, {}, {}, [len(_threads())]
    for side, on in (("graph", False), ("xla", True)):
        c = cfg.replace(client=dataclasses.replace(cfg.client, xla=on))
        t0, c0 = time.perf_counter(), time.process_time()
        trainers[side] = LocalTrainer(c, corpus.vocab.size, corpus.seq_len)
        build_s[side] = {"wall_s": round(time.perf_counter() - t0, 2),
                         "cpu_s": round(time.process_time() - c0, 2)}
        compile_s[side] = round(trainers[side].compile_s, 2)
        thread_counts.append(len(_threads()))
    weights = trainers["graph"].get_weights()
    plan = []
    for rnd in range(1, int(case["rounds"]) + 1):
        cohort = sample_clients(corpus.train_client_ids, cfg.server.clients_per_round,
                                cfg.experiment.seed, rnd)
        plan.append([tf.constant(trainers["graph"].batches_for(corpus.client_train(cid), rnd, cid))
                     for cid in cohort])
    wall = {"graph": [], "xla": []}
    cpu = {"graph": [], "xla": []}
    xla_threads = {}
    for rep in range(int(case.get("repeats", 2))):
        for i, batches in enumerate(plan):
            order = ("graph", "xla") if (rep + i) % 2 == 0 else ("xla", "graph")
            for side in order:
                tr = trainers[side]
                before = _threads() if side == "xla" else None
                t0, c0 = time.perf_counter(), time.process_time()
                for b in batches:
                    tr.set_weights(weights)
                    tr._local_pass(b)
                tr.variables[0].numpy()
                wall[side].append(time.perf_counter() - t0)
                cpu[side].append(time.process_time() - c0)
                if before is not None:
                    for tid, (name, c) in _threads().items():
                        used = c - before.get(tid, (name, 0.0))[1]
                        xla_threads[(tid, name)] = xla_threads.get((tid, name), 0.0) + used
    steps = sum(int(b.shape[0]) for batches in plan for b in batches) * int(case.get("repeats", 2))
    busy = sorted(((name, round(c, 2)) for (_, name), c in xla_threads.items() if c > 0),
                  key=lambda t: -t[1])
    return {"steps": steps, "steps_per_round": [sum(int(b.shape[0]) for b in bs) for bs in plan],
            "graph_round_s": [round(t, 4) for t in wall["graph"]],
            "xla_round_s": [round(t, 4) for t in wall["xla"]],
            "graph_round_cpu_s": [round(t, 3) for t in cpu["graph"]],
            "xla_round_cpu_s": [round(t, 3) for t in cpu["xla"]],
            "graph_ms_per_step": round(1e3 * sum(wall["graph"]) / steps, 2),
            "xla_ms_per_step": round(1e3 * sum(wall["xla"]) / steps, 2),
            "graph_cpu_ms_per_step": round(1e3 * sum(cpu["graph"]) / steps, 2),
            "xla_cpu_ms_per_step": round(1e3 * sum(cpu["xla"]) / steps, 2),
            "speedup_wall": round(sum(wall["graph"]) / sum(wall["xla"]), 3),
            "speedup_cpu": round(sum(cpu["graph"]) / sum(cpu["xla"]), 3),
            "first_call_s": compile_s, "build_s": build_s,
            "threads": {"at_start": thread_counts[0], "after_graph_trainer": thread_counts[1],
                        "after_xla_trainer": thread_counts[2]},
            "xla_pass_cpu_by_thread_s": busy,
            "op_determinism": True}  # enabled above, as in every simulation worker


# --------------------------------------------------------------------------- sim


class TreeMonitor(Poller):
    """Peak RSS and CPU time of this process and all its descendants (Ray's too).

    Polls /proc (Linux only). VmHWM is each process's own peak, so a process read shortly
    before it exits reports (nearly) its true peak; the tree is re-scanned every second,
    the CPU times of the processes found are read every ``interval``. With ``watch`` (a
    metrics.jsonl), the tree's CPU total is recorded each time a row is appended, which
    gives CPU seconds per round: a measure of work done that, unlike wall time, barely
    depends on what else the shared machine is running.
    """

    def __init__(self, interval: float = 0.2, watch: Path | None = None) -> None:
        super().__init__(interval)
        self.watch = watch
        self.peaks: dict[int, tuple[str, int]] = {}  # pid -> (role, VmHWM bytes)
        self.started: dict[int, str] = {}  # pid -> start time (field 22 of /proc/pid/stat)
        self.cpu: dict[int, float] = {}  # pid -> last seen utime + stime, seconds
        # (wall time, tree CPU s, CPU s per role) per appended row
        self.rows: list[tuple[float, float, dict[str, float]]] = []
        self._last_scan = 0.0
        self._watch_size = -1
        self._tick = os.sysconf("SC_CLK_TCK")

    def tick(self) -> None:
        self._poll(scan=time.monotonic() - self._last_scan >= 1.0)

    def last_tick(self) -> None:
        self._poll(scan=True)

    def _scan(self) -> None:
        me = os.getpid()
        kids = children_by_parent()
        todo = [me]
        while todo:
            pid = todo.pop()
            todo.extend(kids.get(pid, []))
            try:
                status = Path(f"/proc/{pid}/status").read_text()
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            hwm = next((int(line.split()[1]) * 1024 for line in status.splitlines()
                        if line.startswith("VmHWM:")), 0)
            role = ("driver" if pid == me else
                    "worker" if ("ClientAppActor" in cmd or "default_worker" in cmd) else "ray")
            self.started.setdefault(pid, self._start_time(pid))
            if hwm >= self.peaks.get(pid, ("", 0))[1]:
                self.peaks[pid] = (role, hwm)
        self._last_scan = time.monotonic()

    def _poll(self, scan: bool) -> None:
        if scan:
            self._scan()
        for pid in list(self.started):
            if (f := proc_stat(pid)) is None:
                continue  # exited: keep its last CPU reading
            if f[19] == self.started[pid]:
                self.cpu[pid] = (int(f[11]) + int(f[12])) / self._tick
        if self.watch is not None:
            try:
                size = self.watch.stat().st_size
            except OSError:
                return
            if size != self._watch_size:
                self._watch_size = size
                n = sum(1 for ln in self.watch.read_text().splitlines() if ln.strip())
                total = sum(self.cpu.values())
                by_role: dict[str, float] = {}
                for pid, c in self.cpu.items():
                    role = self.peaks.get(pid, ("ray",))[0]
                    by_role[role] = by_role.get(role, 0.0) + c
                while len(self.rows) < n:
                    self.rows.append((time.perf_counter(), total, by_role))

    @staticmethod
    def _start_time(pid: int) -> str:
        st = proc_stat(pid)
        return st[19] if st is not None and len(st) > 19 else ""

    def reap(self) -> list[int]:
        """End processes this run started that outlived it (an actor Ray's shutdown missed
        keeps a core busy and would slow every later case). Only pids seen in this tree,
        and only while their start time is unchanged (no pid reuse)."""
        import signal

        left = []
        for pid, started in self.started.items():
            if pid != os.getpid() and started and self._start_time(pid) == started:
                left.append(pid)
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        return left

    def summary(self) -> dict:
        mib = 2**20

        def peaks(role):
            return [b for r, b in self.peaks.values() if r == role]

        workers = peaks("worker")
        return {"driver_peak_mib": round(max(peaks("driver"), default=0) / mib, 1),
                "worker_peak_mib": round(max(workers, default=0) / mib, 1),
                "workers_seen": len(workers),
                "ray_other_peak_sum_mib": round(sum(peaks("ray")) / mib, 1),
                "tree_peak_sum_mib": round(sum(b for _, b in self.peaks.values()) / mib, 1)}


def sim(case: dict) -> dict:
    from fl_sim.app.simulation import simulate

    rounds = int(case["rounds"])
    # The extra last round evaluates (always, in fl_sim); a small evaluation keeps it short.
    overrides = [*case.get("overrides", []), f"experiment.rounds={rounds + 1}",
                 "server.eval_every=0", "server.eval_max_sequences=64", "experiment.compare=[]"]
    cfg = load_cfg({**case, "overrides": overrides})
    run_dir = Path(tempfile.mkdtemp(prefix="flsim-bench-"))
    try:
        t0 = time.perf_counter()
        with TreeMonitor(watch=run_dir / "metrics.jsonl") as mon:
            simulate(cfg, run_dir, progress=lambda s: None)
        total = time.perf_counter() - t0
        mem = mon.summary() if case.get("rss") else {}
        mem["leftover_processes_killed"] = len(mon.reap())
        # CPU seconds of the whole tree per round, from the moments each row appeared.
        marks = [c for _, c, _ in mon.rows]
        mem["round_cpu_s"] = [round(b - a, 3) for a, b in zip(marks, marks[1:])][:rounds - 1]
        # The same per process role: where the simulation's CPU beyond the worker's goes.
        roles = [r for _, _, r in mon.rows]
        mem["round_cpu_by_role_s"] = [{k: round(b.get(k, 0.0) - a.get(k, 0.0), 3) for k in b}
                                      for a, b in zip(roles, roles[1:])][:rounds - 1]
        rows = run_rows(run_dir)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    by_round = {r["round"]: r for r in rows if r.get("type") == "round"}
    times = [by_round[r]["round_time_s"] for r in range(1, rounds + 1)]
    final = next(r for r in rows if r.get("type") == "final")
    return {"round_times_s": times, "total_s": round(total, 2),
            "clients_completed": [by_round[r].get("clients_completed") for r in range(1, rounds + 1)],  # not released under DP
            "train_examples": [by_round[r].get("train_examples") for r in range(1, rounds + 1)],
            "final_round_with_eval_s": by_round[rounds + 1]["round_time_s"],
            "eval_accuracy": final.get("eval_accuracy"), **mem}


# --------------------------------------------------------------------------- flower


def flower(case: dict) -> dict:
    from fl_sim.app.simulation import pin_ray_to_loopback, quiet_libraries

    pin_ray_to_loopback()  # a network setting of this machine, not a performance one
    from flwr.simulation import run_simulation

    quiet_libraries()
    from benchmarks.flower_stock import app as client_app
    from benchmarks.flower_stock import make_server_app
    from fl_sim.data import load_corpus

    cfg = load_cfg(case)
    rounds = int(case["rounds"])
    nodes = len(load_corpus(cfg.data, cfg.experiment.seed).train_client_ids)
    marks: list[float] = []
    t0 = time.perf_counter()
    with TreeMonitor() as rss:
        run_simulation(server_app=make_server_app(cfg, nodes, rounds, marks), client_app=client_app,
                       num_supernodes=nodes)  # default backend settings, as the examples
    total = time.perf_counter() - t0
    rss.reap()
    if len(marks) != rounds + 1:
        raise RuntimeError(f"expected {rounds + 1} round marks, got {len(marks)}")
    times = [round(b - a, 4) for a, b in zip(marks, marks[1:])]
    return {"round_times_s": times, "total_s": round(total, 2), "supernodes": nodes}


if __name__ == "__main__":
    spec = json.loads(sys.argv[1])
    emit({"pure": pure, "sim": sim, "flower": flower, "xla": xla}[spec["kind"]](spec))
