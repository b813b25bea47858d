"""docs/performance.json keeps each benchmark's ratios and targets, merges a partial run into
the previous file, and never lets BENCH_QUICK numbers replace real ones."""

import json

from benchmarks import summary_json


def _result(tmp, name, **kw):
    base = {"benchmark": name, "date": "2026-12-01T15:00:00+00:00", "quick": False,
            "machine": {"commit": "abc1234", "cpu_model": "AMD EPYC", "cpus": 2, "loadavg": [3.5, 2, 1]}}
    (tmp / f"{name}.json").write_text(json.dumps({**base, **kw}))


def test_ratios_rows_and_merging(tmp_path):
    res, out = tmp_path / "results", tmp_path / "performance.json"
    res.mkdir()
    _result(res, "bench_deploy", target={"warm_over_sim_max_cohort_100": 1.3}, met=False,
            results=[{"cohort": 100, "warm_over_sim": 3.951, "warm_over_sim_cpu": 3.667,
                      "warm_round_s": [80.1, 83.8], "sim_round_s": [21.1, 20.4]}])
    _result(res, "bench_flwr_run", flwr_run_over_fl_sim_run=11.037, fl_sim_run_s=20.5)
    doc = json.loads(summary_json.write(res, out).read_text())
    d = doc["benchmarks"]["bench_deploy"]
    assert d["rows"] == [{"cohort": 100, "warm_over_sim": 3.951, "warm_over_sim_cpu": 3.667}]
    assert d["target"] == {"warm_over_sim_max_cohort_100": 1.3} and d["met"] is False
    assert d["commit"] == "abc1234" and d["loadavg_at_end"] == 3.5
    f = doc["benchmarks"]["bench_flwr_run"]
    assert f["flwr_run_over_fl_sim_run"] == 11.037 and "fl_sim_run_s" not in f  # no absolute times

    # A later run of one benchmark replaces only its entry; a quick run replaces nothing.
    (res / "bench_deploy.json").unlink()
    _result(res, "bench_flwr_run", flwr_run_over_fl_sim_run=9.5)
    _result(res, "bench_xla", quick=True, speedup_wall=99.0)
    doc = json.loads(summary_json.write(res, out).read_text())
    assert doc["benchmarks"]["bench_flwr_run"]["flwr_run_over_fl_sim_run"] == 9.5
    assert doc["benchmarks"]["bench_deploy"]["rows"][0]["warm_over_sim"] == 3.951
    assert "bench_xla" not in doc["benchmarks"]
