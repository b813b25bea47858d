"""GPUs for TensorFlow processes that share them: a worker sees the GPUs Ray gave it, and
takes their memory as it needs it.

By default TensorFlow maps nearly all of a GPU's memory in the first process that touches
it, so a second Ray worker placed on the same GPU (``simulation.gpus_per_worker`` < 1)
fails to allocate. Memory growth must be switched on before TensorFlow initialises the
GPUs, i.e. before the process runs its first op: the ClientApp worker and the ServerApp
call this first thing. Flower's own switch for it (RayBackend's ``actor.tensorflow``) is
never read in Flower 1.41 or 1.42 (``_validate_actor_arguments`` looks it up in the empty
dict it is building), so it is done here.

A Ray worker that reserved no GPU (``gpus_per_worker = 0``) trains on the CPU: Ray hides
the GPUs from it only when ``RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO`` is unset (fl-sim sets it
to 0 to silence Ray's warning, and later Ray releases drop the override), so the worker
hides them itself.
"""

from __future__ import annotations

import logging
import sys

log = logging.getLogger("fl_sim.gpu")

_done: int | None = None


def ray_actor_without_gpu() -> bool:
    """True in a Ray actor process that Ray assigned no GPU (a worker of the pool)."""
    ray = sys.modules.get("ray")  # only a process Ray started has it imported already
    if ray is None or not ray.is_initialized():
        return False
    if ray.get_runtime_context().get_actor_id() is None:
        return False  # the driver (ServerApp) or a plain task
    return not ray.get_gpu_ids()


def configure_gpus() -> int:
    """Hide GPUs from a GPU-less Ray worker, else turn on memory growth; once. GPUs used.

    0 where no GPU is visible or none was reserved. If TF has already initialised a GPU
    the settings can no longer change; that is logged.
    """
    global _done
    if _done is not None:
        return _done
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    try:
        if gpus and ray_actor_without_gpu():
            tf.config.set_visible_devices([], "GPU")
            gpus = []
        for gpu in gpus:
            tf.config.experimental.set_memory_growth(gpu, True)
    except RuntimeError:  # TF initialised the GPUs before this call
        log.warning("TensorFlow initialised its GPUs before fl-sim could configure them: "
                    "this process may hold most of a GPU's memory")
    _done = len(gpus)
    return _done
