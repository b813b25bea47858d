"""fl_sim: federated-learning simulation for private on-device language models."""

import os as _os

# Before anything imports Ray (also when Flower's own runtime loads these apps): a
# single-machine Ray must bind to loopback, not the host's interface address.
_os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
