"""The local Ray's start is retried when Ray's fixed 30 s raylet wait runs out (a loaded
machine), and only then: other failures, and a cluster address, raise at once."""

import pytest

from fl_sim.app import simulation

TIMEOUT = Exception("The current node timed out during startup. This could happen because "
                    "some of the raylet failed to startup or the GCS has become overloaded.")


class FlakyRay:
    """Stands in for the ray module: ray.init fails ``fails`` times, then succeeds."""

    def __init__(self, fails: int, error: Exception = TIMEOUT):
        self.fails, self.error, self.inits, self.shutdowns = fails, error, 0, 0

    def init(self, **kwargs):
        self.inits += 1
        if self.inits <= self.fails:
            raise self.error

    def shutdown(self):
        self.shutdowns += 1


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch):
    monkeypatch.setattr(simulation.time, "sleep", lambda s: None)


def test_a_startup_timeout_is_retried_and_said(capsys):
    ray = FlakyRay(fails=simulation.RAY_START_TRIES - 1)
    simulation._init_ray(ray, {"num_cpus": 1}, local=True)
    assert ray.inits == simulation.RAY_START_TRIES and ray.shutdowns == simulation.RAY_START_TRIES - 1
    assert "did not start in time (attempt 1 of" in capsys.readouterr().err


def test_it_gives_up_after_the_last_try():
    ray = FlakyRay(fails=simulation.RAY_START_TRIES)
    with pytest.raises(Exception, match="timed out during startup"):
        simulation._init_ray(ray, {}, local=True)
    assert ray.inits == simulation.RAY_START_TRIES


@pytest.mark.parametrize("error, local", [(ValueError("bad num_cpus"), True), (TIMEOUT, False)])
def test_other_errors_and_clusters_are_not_retried(error, local):
    ray = FlakyRay(fails=1, error=error)
    with pytest.raises(type(error)):
        simulation._init_ray(ray, {}, local=local)
    assert ray.inits == 1 and ray.shutdowns == 0
