"""Fixtures shared by the unit and integration tests."""

import pytest
from flwr.supercore.task_identity import TaskIdentity


@pytest.fixture
def task_identity(monkeypatch):
    """Flower stamps each Message with the run, node and task of the process that creates
    it; tests that build messages outside a Flower runtime set them (used through
    ``pytestmark = pytest.mark.usefixtures("task_identity")``)."""
    monkeypatch.setattr(TaskIdentity, "_run_id", 1)
    monkeypatch.setattr(TaskIdentity, "_node_id", 0)
    monkeypatch.setattr(TaskIdentity, "_task_id", 0)


class StaticGrid:
    """The one Grid method a strategy's configure_train asks: which nodes are connected."""

    def __init__(self, *node_ids: int):
        self.node_ids = list(node_ids)

    def get_node_ids(self):
        return self.node_ids
