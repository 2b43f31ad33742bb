"""The actor's and the critic's losses on an imagined rollout (server- or client-imagined).

Reads the critic once over every imagined latent s_0 … s_H, computes the λ-returns with the
continue probabilities as per-step discounts (`service.losses.dreamer.lambda_return`), the loss
weights, the return normalisation (the model's EMAs, advanced here and committed only with an
update), then `dreamer_actor_loss` and `dreamer_value_loss`. The time steps and the order of
random draws are those of TorchRL 0.14.1's `DreamerV3ActorLoss` and `DreamerV3ValueLoss`
with a continuation model; without a continue head every step continues (c = 1) and the
λ-return is still the true one (TorchRL's collapses to the one-step target there).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from service import distributions
from service.losses.dreamer import (
    dreamer_actor_loss,
    dreamer_value_loss,
    imagination_weights,
    lambda_return,
    return_scale,
    updated_return_range,
)
from service.models.model import Model
from service.runtime.dreamer.imagination import Imagined
from service.runtime.dreamer.networks import Critic, actor_distribution, is_categorical
from service.runtime.dreamer.state import training_state


@dataclass
class BehaviourLosses:
    """The actor's and critic's losses (with their graphs) and the metrics; the return
    percentiles' next EMAs, to commit with an update."""

    actor: torch.Tensor | None = None
    value: torch.Tensor | None = None
    metrics: dict[str, torch.Tensor] = field(default_factory=dict)
    return_range: tuple[torch.Tensor, torch.Tensor] | None = None


def _rows(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(x.shape[0] * x.shape[1], *x.shape[2:])


def behaviour_losses(
    model: Model,
    imagined: Imagined,
    knobs: dict[str, Any],
    *,
    actor: bool,
    value: bool,
) -> BehaviourLosses:
    """The requested losses on `imagined` with the request's `knobs` (see the module
    docstring); the defaults are TorchRL 0.14.1's."""
    gamma, lmbda = float(knobs["gamma"]), float(knobs["lmbda"])
    rows, horizon = imagined.reward.shape
    state, belief = imagined.state, imagined.belief
    critic = Critic(model.value_network)
    values, logits = critic(_rows(state), _rows(belief))
    values = values.reshape(rows, horizon + 1)
    continuation = imagined.continuation
    target = lambda_return(imagined.reward, values[:, 1:], continuation[:, 1:], gamma, lmbda)
    if knobs.get("discount_loss", True):
        weight = imagination_weights(continuation[:, :-1], gamma)
    else:
        weight = torch.ones_like(target)
    out = BehaviourLosses()
    metrics = out.metrics
    metrics["lambda_return_mean"] = target.detach().mean()
    metrics["imagined_reward_mean"] = imagined.reward.detach().mean()
    metrics["continuation_mean"] = continuation[:, 1:].detach().mean()
    if actor:
        out.actor = _actor_loss(model, imagined, knobs, target, weight, values, out)
    if value:
        slow = None
        regularization = float(knobs.get("slow_critic_regularization", 0.0))
        if regularization:
            slow_critic = Critic(training_state(model).slow_critic_for(model))
            with torch.no_grad():
                slow, _ = slow_critic(_rows(state[:, :-1].detach()), _rows(belief[:, :-1].detach()))
            slow = slow.reshape(rows, horizon)
        two_hot = knobs.get("value_loss", "symlog_mse") == "two_hot"
        prediction = (
            logits.reshape(rows, horizon + 1, -1)[:, :-1]
            if two_hot and logits is not None
            else values[:, :-1]
        )
        terms = dreamer_value_loss(
            prediction,
            target,
            weight,
            value_loss="two_hot" if two_hot else "symlog_mse",
            bins=critic._bins,
            slow_target=slow,
            slow_critic_regularization=regularization,
        )
        out.value = terms["loss_value"]
        metrics.update(terms)
    return out


def _actor_loss(
    model: Model,
    imagined: Imagined,
    knobs: dict[str, Any],
    target: torch.Tensor,
    weight: torch.Tensor,
    values: torch.Tensor,
    out: BehaviourLosses,
) -> torch.Tensor:
    rows, horizon = target.shape
    state = training_state(model)
    low, high = state.return_percentiles(target)
    if knobs.get("return_normalization", True):
        low, high = updated_return_range(
            low,
            high,
            target,
            rate=float(knobs.get("return_normalization_rate", 0.01)),
            quantiles=(
                float(knobs.get("return_low_quantile", 0.05)),
                float(knobs.get("return_high_quantile", 0.95)),
            ),
        )
        out.return_range = (low, high)
        scale = return_scale(low, high, float(knobs.get("return_normalization_min_scale", 1.0)))
        scale = scale.squeeze(-1)
    else:
        scale = torch.ones((), dtype=target.dtype, device=target.device)
    use_reinforce = bool(knobs.get("use_reinforce", False))
    entropy_bonus = float(knobs.get("entropy_bonus", 3e-4))
    log_prob = entropy = baseline = None
    if use_reinforce or entropy_bonus > 0:
        # π on the stopped imagined states s_0 … s_{H−1} (TorchRL's `get_dist`).
        dist = actor_distribution(
            model,
            _rows(imagined.state[:, :-1].detach()),
            _rows(imagined.belief[:, :-1].detach()),
        )
        if use_reinforce:
            action = _rows(imagined.action.detach())
            if is_categorical(model):
                action = action.argmax(-1)
            log_prob = distributions.log_prob(dist, action).reshape(rows, horizon)
            baseline = values[:, :-1]
        if entropy_bonus > 0:
            entropy = distributions.entropy(dist).reshape(rows, horizon)
    terms = dreamer_actor_loss(
        target,
        weight,
        scale,
        log_prob=log_prob,
        baseline=baseline,
        entropy=entropy,
        use_reinforce=use_reinforce,
        entropy_bonus=entropy_bonus,
    )
    out.metrics.update(terms)
    out.metrics["return_low"] = low.detach().reshape(())
    out.metrics["return_high"] = high.detach().reshape(())
    out.metrics["return_scale"] = scale.detach().reshape(())
    return terms["loss_actor"]
