"""Usage, config and data errors: exit code 2, a message naming what is wrong, nothing written."""

from tests.integration.conftest import run_cli


def test_help():
    proc = run_cli("--help")
    assert proc.returncode == 0 and "run" in proc.stdout
    proc = run_cli("run", "--help")
    assert proc.returncode == 0 and "--set" in proc.stdout and "--resume" in proc.stdout


def test_bad_config_key_exits_2_and_writes_nothing(tmp_path):
    proc = run_cli("run", "experiments/smoke.toml", "--set", "client.lrr=0.1", "--out", tmp_path)
    assert proc.returncode == 2
    assert "client.lrr" in proc.stderr and "experiments/smoke.toml" in proc.stderr
    assert not any(tmp_path.iterdir())


def test_bad_value_exits_2(tmp_path):
    proc = run_cli("run", "experiments/smoke.toml", "--set", "server.clients_per_round=0", "--out", tmp_path)
    assert proc.returncode == 2 and "server.clients_per_round = 0" in proc.stderr


def test_bad_jsonl_names_file_and_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"client_id": "a", "text": "hello there"}\nnot json\n')
    proc = run_cli("run", "experiments/smoke.toml", "--set", "data.source=jsonl",
                   "--set", f"data.path={bad}", "--set", f"data.cache_dir={tmp_path / 'c'}",
                   "--out", tmp_path / "out")
    assert proc.returncode == 2, proc.stderr
    assert f"{bad}:2" in proc.stderr or (str(bad) in proc.stderr and "line 2" in proc.stderr)
    assert not (tmp_path / "out").exists()


def test_missing_file_and_resume_misuse(tmp_path):
    assert run_cli("run", tmp_path / "nope.toml").returncode == 2
    assert run_cli("run", "--resume", tmp_path).returncode == 2
    assert run_cli("run").returncode == 2
