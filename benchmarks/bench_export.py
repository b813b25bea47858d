"""Benchmark 5: TFLite export, size and per-token latency per variant.

Trains a short run of the default demo model (si_cifg, demo dimensions and vocabulary; two
rounds, so the weights are real but the accuracy is not the point) and runs
``fl-sim export`` on it. The numbers come from the export's own report.json: file size,
gzip -9 size, and per-token latency (the recurrent ``step`` signature, median of
``LATENCY_RUNS`` invocations) with LiteRT's default XNNPACK delegate at 1 and 2 threads and
with builtin kernels at 1 thread.

If fl_sim/export is missing or the export fails, the result says so (``status``) instead
of failing ``make bench``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.common import QUICK, REPO, loadavg, show, write_result

LATENCY_RUNS = 20 if QUICK else 100
EVAL_SEQUENCES = 50 if QUICK else 200
TRAIN = ["--set", "experiment.compare=[]", "--set", 'model.kind="si_cifg"', "--rounds", "2",
         "--set", "server.clients_per_round=4", "--set", "server.eval_max_sequences=200",
         "--set", "client.max_steps=8"]


def _cli(*args: str, timeout: float = 1200) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "fl_sim.app.cli", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _tail(proc: subprocess.CompletedProcess) -> str:
    return "\n".join((proc.stdout + proc.stderr).splitlines()[-25:])


def main() -> None:
    tracked = subprocess.run(["git", "ls-files", "fl_sim/export"], cwd=REPO, capture_output=True,
                             text=True).stdout.split()
    if not tracked:
        payload = {"status": "pending", "reason": "fl_sim/export is not committed yet"}
        show("export", [("status", payload["reason"]), ("written", write_result("bench_export", payload))])
        return
    out = Path(tempfile.mkdtemp(prefix="flsim-bench-export-"))
    try:
        before = loadavg()
        train = _cli("run", "experiments/demo.toml", "--out", str(out), *TRAIN)
        runs = sorted((out / "demo").iterdir()) if (out / "demo").is_dir() else []
        if train.returncode or not runs:
            payload = {"status": "failed", "stage": "train", "output": _tail(train)}
        else:
            export = _cli("export", str(runs[-1]), "--eval-sequences", str(EVAL_SEQUENCES),
                          "--latency-runs", str(LATENCY_RUNS), "--quiet")
            report_path = runs[-1] / "export" / "report.json"
            if not report_path.is_file():
                payload = {"status": "failed", "stage": "export", "exit": export.returncode,
                           "output": _tail(export)}
            else:
                report = json.loads(report_path.read_text())
                variants = []
                for fmt, e in report["formats"].items():
                    lat = e.get("latency") or {}
                    xnn = lat.get("xnnpack") or {}
                    variants.append({
                        "format": fmt, "status": e.get("status"), "size_bytes": e.get("size_bytes"),
                        "size_ratio_to_float32": e.get("size_ratio_to_float32"),
                        "gzip_bytes": e.get("gzip_bytes"),
                        # per_token_ms: builtin kernels; the _xnnpack ones: LiteRT's default delegate
                        "per_token_ms": lat.get("per_token_ms"),
                        "per_token_ms_xnnpack": (xnn.get("1") or {}).get("per_token_ms"),
                        "per_token_ms_xnnpack_2_threads": (xnn.get("2") or {}).get("per_token_ms"),
                        "sequence_ms": lat.get("sequence_ms"),
                        "tflite_accuracy": (e.get("tflite") or {}).get("accuracy"),
                        "top1_agreement": (e.get("tflite") or {}).get("top1_agreement")})
                payload = {"status": "ok" if export.returncode == 0 else f"exit {export.returncode}",
                           "model": report.get("kind"), "parameters": report.get("parameters"),
                           "interpreter": report.get("interpreter"), "latency_runs": LATENCY_RUNS,
                           "export_seconds": report.get("export_seconds"), "variants": variants}
        payload["loadavg_before"], payload["loadavg_after"] = before, loadavg()
    finally:
        shutil.rmtree(out, ignore_errors=True)
    path = write_result("bench_export", payload)
    rows = [("status", payload["status"])]
    for v in payload.get("variants", []):
        size = f"{v['size_bytes'] / 1024:.0f} KiB" if v["size_bytes"] else "-"
        xnn = (f"{v['per_token_ms_xnnpack']:.3f} / {v['per_token_ms_xnnpack_2_threads']:.3f} ms/token "
               "XNNPACK 1 / 2 threads" if v["per_token_ms_xnnpack"] is not None else "-")
        lat = f" ({v['per_token_ms']:.3f} builtin)" if v["per_token_ms"] is not None else ""
        rows.append((v["format"], f"{size}  {xnn}{lat}"))
    if payload["status"] != "ok" and "output" in payload:
        rows.append(("output", payload["output"][-800:]))
    show("TFLite export: size and per-token latency", rows + [("written", path)])


if __name__ == "__main__":
    main()
