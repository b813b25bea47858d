"""User-level differential privacy for DP-FedAvg: clipping, noise, adaptive clipping,
accounting and calibration (pure NumPy + dp-accounting; no Flower).

McMahan et al. 2018, "Learning Differentially Private Recurrent Language Models";
Andrew et al. 2021, "Differentially Private Learning with Adaptive Clipping".
"""

from fl_sim.privacy.accountant import (PrivacyLedger, default_delta, neighboring_relation,
                                       round_event)
from fl_sim.privacy.adaptive import (QuantileClipEstimator, default_clipped_count_stddev,
                                     effective_noise_multiplier, resolve_clipped_count_stddev,
                                     split_noise_multiplier)
from fl_sim.privacy.aggregator import DPAggregator
from fl_sim.privacy.calibration import calibrate_noise
from fl_sim.privacy.clipping import clip_update, global_norm
from fl_sim.privacy.noise import add_gaussian_noise, clipped_sum, dp_mean, noisy_sum

__all__ = [
    "DPAggregator", "PrivacyLedger", "QuantileClipEstimator", "add_gaussian_noise",
    "calibrate_noise", "clip_update", "clipped_sum", "default_clipped_count_stddev",
    "default_delta", "dp_mean", "effective_noise_multiplier", "global_norm",
    "neighboring_relation", "noisy_sum", "resolve_clipped_count_stddev", "round_event",
    "split_noise_multiplier",
]
