"""DreamerV3's λ-return over an imagined horizon, with a per-step continue discount.

Hafner et al. 2023 (arXiv 2301.04104), eq. 7, for imagined steps t = 0 … H−1:

    R_t = r_t + γ c_t ((1 − λ) v_{t+1} + λ R_{t+1}),        R_H = v_H

where r_t is the reward predicted for the transition s_t → s_{t+1}, c_t ∈ [0, 1] the continue
probability predicted at s_{t+1} (1 without a continue head), and v_{t+1} = V(s_{t+1}). So
`reward`, `continuation` and `next_value` all cover the transitions t = 0 … H−1 ([*B, H]) and
index t holds what is known at s_{t+1}. This is the TD(λ) recursion of
`service.estimators.td` with the per-step discount γ·c_t; it is evaluated with one batched
operation per horizon step (H is small, 15 by default).

The loss weights of the actor and critic (`imagination_weights`) discount each imagined state
by the chance that the episode is still running there:

    w_0 = c̃_0,   w_t = w_{t−1} · γ c̃_t

with c̃_t the continue probability at s_t (c̃_0 at the starting state; c̃_t = c_{t−1} after).
This is TorchRL 0.14.1's `discount_weight` of `DreamerV3ActorLoss` with a continuation model.
"""

from __future__ import annotations

import torch

from service.errors import ArgumentError


def lambda_return(
    reward: torch.Tensor,
    next_value: torch.Tensor,
    continuation: torch.Tensor,
    gamma: float,
    lmbda: float,
) -> torch.Tensor:
    """R_t for t = 0 … H−1 ([*B, H]; see the module docstring for the time steps)."""
    if not (reward.shape == next_value.shape == continuation.shape) or reward.dim() < 1:
        raise ArgumentError(
            "reward",
            f"reward, next_value and continuation must share one shape [*B, H]; got "
            f"{list(reward.shape)}, {list(next_value.shape)}, {list(continuation.shape)}",
        )
    horizon = reward.shape[-1]
    if horizon < 1:
        raise ArgumentError("reward", "the horizon H must be at least 1")
    discount = gamma * continuation
    # The bootstrap part of each step does not depend on the recursion: one batched op.
    immediate = reward + discount * (1 - lmbda) * next_value
    carried = discount * lmbda
    returns = [next_value[..., -1]]
    for t in range(horizon - 1, -1, -1):
        returns.append(immediate[..., t] + carried[..., t] * returns[-1])
    return torch.stack(returns[:0:-1], dim=-1)


def imagination_weights(root_continuation: torch.Tensor, gamma: float) -> torch.Tensor:
    """w [*B, H] from c̃ [*B, H], the continue probabilities at the imagined states s_0 … s_{H−1}
    (w_0 = c̃_0, w_t = w_{t−1} γ c̃_t); detached: the weights carry no gradient."""
    factors = torch.cat([root_continuation[..., :1], gamma * root_continuation[..., 1:]], dim=-1)
    return factors.cumprod(dim=-1).detach()
