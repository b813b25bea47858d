"""Let several TensorFlow processes share a GPU: each takes GPU memory as it needs it.

By default TensorFlow maps nearly all of a GPU's memory in the first process that touches
it, so a second Ray worker placed on the same GPU (``simulation.gpus_per_worker`` < 1)
fails to allocate. Memory growth must be switched on before TensorFlow initialises the
GPUs, i.e. before the process runs its first op: the ClientApp worker and the ServerApp
call this first thing. Flower's own switch for it (RayBackend's ``actor.tensorflow``) is
never read in Flower 1.41, so it is done here.
"""

from __future__ import annotations

import logging

log = logging.getLogger("fl_sim.gpu")

_done: int | None = None


def enable_memory_growth() -> int:
    """Turn on memory growth for every GPU this process sees, once; return how many.

    0 where no GPU is visible (a CPU machine, or a Ray worker Ray gave no GPU). If TF has
    already initialised a GPU the setting can no longer change; that is logged.
    """
    global _done
    if _done is not None:
        return _done
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # TF initialised the GPUs before this call
            if not tf.config.experimental.get_memory_growth(gpu):
                log.warning("%s: TensorFlow initialised it before memory growth could be set; "
                            "this process holds most of its memory", gpu.name)
    _done = len(gpus)
    return _done
