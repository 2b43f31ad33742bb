"""DreamerV3's maths (Hafner et al. 2023, arXiv 2301.04104): pure torch, one topic per module.

`symlog` (symlog/symexp), `two_hot` (255-bin support, encode/decode/cross-entropy),
`lambda_return` (λ-return with a per-step continue discount, loss weights), `return_norm`
(percentile return normalisation), `kl` (KL balancing with free bits), and the three losses:
`actor`, `value`, `world_model`.
"""

from service.losses.dreamer.actor import dreamer_actor_loss
from service.losses.dreamer.kl import kl_balanced, kl_separate
from service.losses.dreamer.lambda_return import imagination_weights, lambda_return
from service.losses.dreamer.return_norm import return_scale, updated_return_range
from service.losses.dreamer.symlog import symexp, symlog
from service.losses.dreamer.two_hot import (
    DEFAULT_BINS,
    default_bins,
    two_hot_cross_entropy,
    two_hot_decode,
    two_hot_encode,
)
from service.losses.dreamer.value import VALUE_LOSSES, dreamer_value_loss
from service.losses.dreamer.world_model import dreamer_model_loss

__all__ = [
    "DEFAULT_BINS",
    "VALUE_LOSSES",
    "default_bins",
    "dreamer_actor_loss",
    "dreamer_model_loss",
    "dreamer_value_loss",
    "imagination_weights",
    "kl_balanced",
    "kl_separate",
    "lambda_return",
    "return_scale",
    "symexp",
    "symlog",
    "two_hot_cross_entropy",
    "two_hot_decode",
    "two_hot_encode",
    "updated_return_range",
]
