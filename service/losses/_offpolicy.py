"""Shared contracts of the off-policy losses (private): transitions, networks, TD(0) targets.

Layout: a replay sample of N transitions, flattened from the request's [*B]. Networks are
callables the runtime binds to the model, so the maths here stays pure torch:

* ``qvalue(inputs, action)`` → [N, E, K]: the online ensemble (K = 1 for Q(s, a), K = number of
  actions for an action-value head; ``action`` is None for the latter);
* ``qvalue_frozen``: the same values with no gradient to the Q-parameters (the actor's loss,
  TorchRL's ``qvalue_network_params.detach()``), gradients still flow into the action;
* ``target_qvalue``: the target ensemble (no gradient at all);
* ``actor(inputs)`` → the action distribution (`service.distributions`), batch [N];
* ``policy(inputs)`` / ``target_policy(inputs)`` → the deterministic action [N, *action_shape]
  of the online / target actor (DDPG, TD3): the actor's location, squashed into [low, high] for
  a tanh-normal actor: (high + low)/2 + (high − low)/2 · tanh(loc);
* ``action_bounds``: (low, high) of continuous actions (TD3 clamps its noisy targets to them);
* ``value(inputs)`` → V(s) [N], the model's value network (IQL).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from torch import distributions as D

from service.errors import ArgumentError

QValueFn = Callable[[list[Tensor], Tensor | None], Tensor]
ActorFn = Callable[[list[Tensor]], D.Distribution]
PolicyFn = Callable[[list[Tensor]], Tensor]
DISTANCES = ("l1", "l2", "smooth_l1")


@dataclass(frozen=True)
class Transitions:
    """N transitions (s, a, r, s′, done, terminated); `inputs`/`next_inputs` are the model's
    inputs in manifest order, each [N, *shape]; reward [N]; done/terminated [N] bool; action
    [N, *action_shape] (float) or [N] (int64 index)."""

    inputs: list[Tensor]
    next_inputs: list[Tensor]
    action: Tensor
    reward: Tensor
    done: Tensor
    terminated: Tensor
    # n-step targets: V(s′) [N] → the estimator's return [N] over the request's [*B, T]
    # segments (TD(1), TD(λ)); None = TD(0) with the loss's γ.
    returns: Callable[[Tensor], Tensor] | None = None

    @property
    def rows(self) -> int:
        """N."""
        return int(self.reward.shape[0])


@dataclass(frozen=True)
class Networks:
    """The model's networks bound for one loss evaluation (see the module docstring)."""

    qvalue: QValueFn
    qvalue_frozen: QValueFn
    target_qvalue: QValueFn
    actor: ActorFn | None = None
    policy: PolicyFn | None = None
    target_policy: PolicyFn | None = None
    action_bounds: tuple[float, float] = (-1.0, 1.0)
    value: Callable[[list[Tensor]], Tensor] | None = None  # V(s) → [N] (IQL)
    log_alpha: Tensor | None = None  # SAC's temperature parameter, 0-d


def distance(prediction: Tensor, target: Tensor, loss_function: str) -> Tensor:
    """TorchRL's `distance_loss` (no reduction): "l2" squared error, "l1", "smooth_l1"."""
    if prediction.shape != target.shape:
        raise ArgumentError(
            "target", f"expected shape {tuple(prediction.shape)}, got {tuple(target.shape)}"
        )
    if loss_function == "l2":
        return F.mse_loss(prediction, target, reduction="none")
    if loss_function == "l1":
        return F.l1_loss(prediction, target, reduction="none")
    if loss_function == "smooth_l1":
        return F.smooth_l1_loss(prediction, target, reduction="none")
    raise ArgumentError("loss_function", f"expected one of {DISTANCES}, got {loss_function!r}")


def td0_target(reward: Tensor, terminated: Tensor, next_value: Tensor, gamma: float) -> Tensor:
    """G = r + γ·(1 − terminated)·V(s′), all [N] (TorchRL's `td0_return_estimate`).

    A terminated step's V(s′) is selected away rather than multiplied by 0, so a NaN next
    observation there cannot leak in; truncation (done, not terminated) bootstraps.
    """
    bootstrap = torch.where(terminated, torch.zeros_like(next_value), next_value)
    return reward + gamma * bootstrap


def value_target(batch: Transitions, next_value: Tensor, gamma: float) -> Tensor:
    """The loss's regression target from the bootstrap values V(s′) [N]: TD(0) with `gamma`, or
    the request's estimator over its [*B, T] segments (`Transitions.returns`)."""
    if batch.returns is not None:
        return batch.returns(next_value)
    return td0_target(batch.reward, batch.terminated, next_value, gamma)


def alpha_of(log_alpha: Tensor, min_alpha: float | None, max_alpha: float | None) -> Tensor:
    """log α clamped to [log min_alpha, log max_alpha] as TorchRL's `_alpha` does (it clamps
    the parameter's data: the gradient passes straight through)."""
    if min_alpha is None and max_alpha is None:
        return log_alpha
    low = torch.tensor(min_alpha or 0.0, dtype=log_alpha.dtype).log()
    high = torch.tensor(max_alpha or 1e9, dtype=log_alpha.dtype).log()
    clamped = log_alpha.detach().clamp(low.to(log_alpha.device), high.to(log_alpha.device))
    return log_alpha + (clamped - log_alpha.detach())


def check_alpha_bounds(min_alpha: float | None, max_alpha: float | None) -> None:
    """TorchRL's rule: max_alpha, when given, is > 0 (and above min_alpha)."""
    if max_alpha is not None and min_alpha is not None and max_alpha <= min_alpha:
        raise ArgumentError(
            "max_alpha", f"expected a value > min_alpha {min_alpha}, got {max_alpha}"
        )


@dataclass(frozen=True)
class OffPolicyKind:
    """What an off-policy loss needs from the model (its registry entry's `offpolicy`).

    `qvalue_kind`: the Q-network kind it takes; `single_qvalue`: an ensemble of exactly one
    (DQN); `actor`: the actor distributions it accepts (empty = it uses no actor);
    `temperature`: it has SAC's log α (loss_alpha, the temperature's optimizer);
    `samples`: it draws actions or noise (the request's `seed` knob).
    """

    qvalue_kind: str
    single_qvalue: bool = False
    actor: tuple[str, ...] = ()
    temperature: bool = False
    samples: bool = False

    # CrossQ: () = the loss uses no target network, so updates move none.
    uses_targets: bool = True

    def target_networks(self, options: dict) -> tuple[str, ...]:
        """The targets an update moves: the Q-networks', and the actor's when it has one."""
        if not self.uses_targets:
            return ()
        if self.delay_actor_default is None:
            return ("qvalue",)
        delayed = options.get("delay_actor", self.delay_actor_default)
        return ("qvalue", "actor") if delayed else ("qvalue",)

    # DDPG/TD3: the `delay_actor` knob's default; with it the actor's target moves too.
    delay_actor_default: bool | None = None
    # TD3: the actor learns (and the targets move) only on every `policy_update_delay`-th update.
    delayed_policy: bool = False
    # IQL: the model's state-value network V(s) too.
    value_network: bool = False
    # CQL (as TorchRL's): an ensemble of exactly two Q-networks.
    ensemble_of_two: bool = False
