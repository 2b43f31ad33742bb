"""Pure-torch RL losses with TorchRL's semantics and output names (DI-engine's for V-trace).

Every function takes the current action distribution (see :mod:`service.distributions`) and
plain tensors, runs no network, mutates nothing, and returns a ``dict`` of 0-d tensors whose
``"loss"`` entry is the sum of its ``"loss_*"`` entries (the quantity to backward).

Layout (TorchRL's): distribution batch ``[*B]``; log-probs ``[*B]``; value-like tensors
(advantage, values, targets, rewards, done flags) ``[*B, 1]``; V-trace data ``[*B, T, 1]``.
"""

from service.losses.a2c import a2c_loss
from service.losses.impala import impala_loss
from service.losses.ppo import ppo_clip_loss, ppo_kl_loss, ppo_loss
from service.losses.reinforce import reinforce_loss

__all__ = [
    "a2c_loss",
    "impala_loss",
    "ppo_clip_loss",
    "ppo_kl_loss",
    "ppo_loss",
    "reinforce_loss",
]
