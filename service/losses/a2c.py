"""Advantage actor-critic loss (TorchRL's ``A2CLoss`` semantics).

See "Asynchronous Methods for Deep Reinforcement Learning" by Mnih et al., 2016
(https://arxiv.org/abs/1602.01783). Layout as in :mod:`service.losses.ppo`: ``dist`` batch
``[*B]``, ``action`` ``[*B]``/``[*B, A]``, value-like tensors ``[*B, 1]``; every output is 0-d.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch import distributions as D

from service.losses import _common as C

__all__ = ["a2c_loss"]


def a2c_loss(
    dist: D.Distribution,
    action: Tensor,
    advantage: Tensor,
    state_value: Tensor | None = None,
    value_target: Tensor | None = None,
    *,
    entropy_bonus: bool = True,
    entropy_coeff: float = 0.01,
    critic_coeff: float | None = 1.0,
    loss_critic_type: str = "smooth_l1",
    clip_value: float | None = None,
    old_state_value: Tensor | None = None,
    samples_mc_entropy: int = 1,
    generator: torch.Generator | None = None,
) -> dict[str, Tensor]:
    """A2C: ``loss_objective = −mean(log π(a)·A)``, entropy bonus, critic regression.

    ``loss_entropy = −entropy_coeff·mean(H[π])`` (present iff ``entropy_bonus`` and
    ``entropy_coeff != 0``, as in TorchRL); ``loss_critic = critic_coeff·mean(d(V_target, V))``
    (present iff ``critic_coeff is not None``; 0 keeps a zero term, as in TorchRL), value-clipped
    like PPO when ``clip_value`` is set. The advantage is used as given (not detached).

    Args:
        dist: current policy, batch ``[*B]``.
        action: stored actions ``[*B]`` (categorical, integer) or ``[*B, A]``.
        advantage: ``[*B, 1]``.
        state_value, value_target: ``[*B, 1]``; required unless ``critic_coeff is None``.
        entropy_bonus, entropy_coeff, critic_coeff, loss_critic_type, clip_value,
        old_state_value, samples_mc_entropy, generator: see :func:`service.losses.ppo_loss`.

    Returns:
        ``loss_objective``, [``entropy``, ``loss_entropy``], [``loss_critic``,
        ``value_clip_fraction``], ``loss`` (sum of the ``loss_*`` entries) — all 0-d.
    """
    dist = C.check_distribution(dist)
    value_shape = (*dist.batch_shape, 1)
    C.check_tensor("advantage", advantage, value_shape)
    dtype = advantage.dtype
    C.check_nonneg("entropy_coeff", entropy_coeff)
    C.check_choice("loss_critic_type", loss_critic_type, C.LOSS_CRITIC_TYPES)
    C.check_samples("samples_mc_entropy", samples_mc_entropy)
    clip_value = C.check_clip_value(clip_value)
    has_critic = critic_coeff is not None
    if has_critic:
        C.check_nonneg("critic_coeff", critic_coeff)
        C.check_critic_inputs(
            state_value, value_target, old_state_value, clip_value, value_shape, dtype
        )
    log_prob = C.current_log_prob(dist, action, dtype).unsqueeze(-1)
    out: dict[str, Tensor] = {"loss_objective": -(log_prob * advantage).mean()}
    if entropy_bonus and entropy_coeff:
        ent = C.entropy_per_sample(dist, samples_mc_entropy, generator)
        out["entropy"] = ent.detach().mean()
        out["loss_entropy"] = (-entropy_coeff * ent).mean()
    if has_critic:
        assert state_value is not None and value_target is not None
        loss_value, clip_fraction = C.critic_terms(
            state_value, value_target, loss_critic_type, clip_value, old_state_value
        )
        out["loss_critic"] = (critic_coeff * loss_value).mean()
        if clip_fraction is not None:
            out["value_clip_fraction"] = clip_fraction
    out["loss"] = C.total(out)
    return out
