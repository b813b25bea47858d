"""fl_sim.malloc: glibc accepts the thresholds, and the switch turns them off."""

import platform
import subprocess
import sys

import pytest

CODE = "from fl_sim.malloc import tune_malloc; print(tune_malloc(), tune_malloc())"


def run(env_value: str | None) -> str:
    import os

    env = {k: v for k, v in os.environ.items() if k != "FL_SIM_MALLOC_TUNING"}
    if env_value is not None:
        env["FL_SIM_MALLOC_TUNING"] = env_value
    return subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True,
                          env=env, check=True).stdout.strip()


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt thresholds are glibc's")
def test_glibc_accepts_the_thresholds_once_per_process():
    assert run(None) == "True True"


def test_switch_leaves_malloc_alone():
    assert run("0") == "False False"
