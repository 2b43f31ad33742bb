"""REINFORCE with a learned baseline (TorchRL's ``ReinforceLoss`` semantics).

See "Simple statistical gradient-following algorithms for connectionist reinforcement
learning" by Williams, 1992. Layout as in :mod:`service.losses.ppo`. Unlike TorchRL's module
(which, when it computes the advantage itself, writes it into the caller's tensordict), this
function never mutates its inputs: the advantage is an input and nothing is written back.
"""

from __future__ import annotations

from torch import Tensor
from torch import distributions as D

from service.losses import _common as C

__all__ = ["reinforce_loss"]


def reinforce_loss(
    dist: D.Distribution,
    action: Tensor,
    advantage: Tensor,
    state_value: Tensor,
    value_target: Tensor,
    *,
    loss_critic_type: str = "smooth_l1",
    clip_value: float | None = None,
    old_state_value: Tensor | None = None,
) -> dict[str, Tensor]:
    """REINFORCE: ``loss_actor = −mean(log π(a)·sg(A))``, ``loss_value = mean(d(V_target, V))``.

    ``sg`` = stop-gradient (the advantage is detached, as in TorchRL); no coefficients, no
    entropy term; the value loss is value-clipped like PPO's when ``clip_value`` is set.

    Args:
        dist: current policy, batch ``[*B]``.
        action: stored actions ``[*B]`` (categorical, integer) or ``[*B, A]``.
        advantage, state_value, value_target: ``[*B, 1]``.
        loss_critic_type: ``"l1"``, ``"l2"`` or ``"smooth_l1"`` (TorchRL default).
        clip_value, old_state_value: see :func:`service.losses.ppo_loss`.

    Returns:
        ``loss_actor``, ``loss_value``, [``value_clip_fraction``], ``loss`` — all 0-d.
    """
    dist = C.check_distribution(dist)
    value_shape = (*dist.batch_shape, 1)
    C.check_tensor("advantage", advantage, value_shape)
    dtype = advantage.dtype
    C.check_choice("loss_critic_type", loss_critic_type, C.LOSS_CRITIC_TYPES)
    clip_value = C.check_clip_value(clip_value)
    C.check_critic_inputs(
        state_value, value_target, old_state_value, clip_value, value_shape, dtype
    )
    log_prob = C.current_log_prob(dist, action, dtype).unsqueeze(-1)
    out: dict[str, Tensor] = {"loss_actor": -(log_prob * advantage.detach()).mean()}
    loss_value, clip_fraction = C.critic_terms(
        state_value, value_target, loss_critic_type, clip_value, old_state_value
    )
    out["loss_value"] = loss_value.mean()
    if clip_fraction is not None:
        out["value_clip_fraction"] = clip_fraction
    out["loss"] = C.total(out)
    return out
