"""ComputeLoss for the DreamerV3 losses: the world model, the actor, the critic, or all three
in one learner step; with `apply_update`, their optimizer steps and one new version.

`dreamer_v3_model`: the world-model loss on a replay batch (`replay.observe`).
`dreamer_v3_actor` / `dreamer_v3_value`: imagination from the request's starting latents (or
the client's own imagined rollout), then the actor's or the critic's loss (`behaviour`).
`dreamer_v3`: TorchRL's `DreamerV3Loss` order — the world model on the replay batch, then
imagination from every posterior latent (detached), then the actor's and the critic's losses.

Runs in a worker thread holding the model's lock (the losses, the update and the version
belong together). Without `apply_update` nothing on the model changes: the return EMAs
advanced for the loss, and the slow critic, are committed only with an update.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from service.errors import FailedPrecondition, InvalidArgument, ResourceExhausted
from service.models.model import Model
from service.runtime.call import CallState
from service.runtime.dreamer.behaviour import behaviour_losses
from service.runtime.dreamer.imagination import Imagined, imagine
from service.runtime.dreamer.networks import is_categorical, world_model_of
from service.runtime.dreamer.replay import Observed, Replay, observe
from service.runtime.dreamer.state import training_state
from service.runtime.dreamer.update import GroupStep, apply_dreamer_update, soft_update
from service.runtime.versions import require_version

DREAMER_LOSSES = ("dreamer_v3_actor", "dreamer_v3_value", "dreamer_v3_model", "dreamer_v3")
DEFAULT_HORIZON = 15
DEFAULT_SLOW_CRITIC_RATE = 0.02


@dataclass(frozen=True)
class DreamerInputs:
    """A decoded Dreamer ComputeLoss request (rows: the request's [*B] flattened to N)."""

    loss: str
    model_knobs: dict[str, Any] = field(default_factory=dict)
    actor_knobs: dict[str, Any] = field(default_factory=dict)
    value_knobs: dict[str, Any] = field(default_factory=dict)
    batch_shape: tuple[int, ...] = ()
    start: tuple[torch.Tensor, torch.Tensor] | None = None  # (state [N, S], belief [N, D])
    replay: Replay | None = None
    imagined: Imagined | None = None  # the client-side imagination form
    return_posterior: bool = False
    apply_update: bool = False
    expected_version: int | None = None
    min_version: int | None = None


@dataclass(frozen=True)
class DreamerResult:
    """The losses, their metrics, what the update did, and (opt-in) the posterior latents."""

    loss: float
    metrics: dict[str, float]
    parameter_version: int
    new_parameter_version: int
    updated: bool
    grad_norm: float
    network_ms: float
    posterior: dict[str, torch.Tensor] | None = None  # [*B, T, *latent]


def horizon_of(knobs: dict[str, Any], limit: int, loss: str) -> int:
    """The imagination horizon H (default 15); RESOURCE_EXHAUSTED above the server's limit."""
    horizon = knobs.get("imagination_horizon", DEFAULT_HORIZON)
    where = f"{'dreamer_v3.actor' if loss == 'dreamer_v3' else loss}.imagination"
    if horizon != int(horizon) or horizon < 1:
        raise InvalidArgument(
            f"{where}.imagination_horizon: expected an integer ≥ 1, got {horizon}"
        )
    if horizon > limit:
        raise ResourceExhausted(
            f"{where}.imagination_horizon: {int(horizon)} steps is above this server's "
            f"limit of {limit} (--max-imagination-steps)"
        )
    return int(horizon)


def _imagination(
    model: Model, inputs: DreamerInputs, observed: Observed | None, horizon: int
) -> Imagined:
    if inputs.imagined is not None:
        return inputs.imagined
    if observed is not None:  # dreamer_v3: from every posterior latent, detached
        state = observed.state.detach().reshape(-1, observed.state.shape[-1])
        belief = observed.belief.detach().reshape(-1, observed.belief.shape[-1])
    else:
        assert inputs.start is not None
        state, belief = inputs.start
    return imagine(model, state, belief, horizon)


def dreamer_losses(
    model: Model, inputs: DreamerInputs, max_imagination_steps: int
) -> tuple[dict[str, GroupStep], dict[str, torch.Tensor], Observed | None, Any]:
    steps: dict[str, GroupStep] = {}
    metrics: dict[str, torch.Tensor] = {}
    observed = None
    if inputs.loss in ("dreamer_v3_model", "dreamer_v3"):
        assert inputs.replay is not None
        observed = observe(model, inputs.replay, inputs.model_knobs)
        steps["world_model"] = GroupStep(observed.total)
        metrics.update(observed.losses)
    behaviour = None
    if inputs.loss != "dreamer_v3_model":
        actor = inputs.loss in ("dreamer_v3_actor", "dreamer_v3")
        value = inputs.loss in ("dreamer_v3_value", "dreamer_v3")
        knobs = {**inputs.value_knobs, **inputs.actor_knobs} if actor else dict(inputs.value_knobs)
        horizon = (
            inputs.imagined.horizon
            if inputs.imagined is not None
            else horizon_of(knobs, max_imagination_steps, inputs.loss)
        )
        if inputs.imagined is not None and horizon > max_imagination_steps:
            raise ResourceExhausted(
                f"imagined: a horizon of {horizon} steps is above this server's limit of "
                f"{max_imagination_steps} (--max-imagination-steps)"
            )
        imagined = _imagination(model, inputs, observed, horizon)
        behaviour = behaviour_losses(model, imagined, knobs, actor=actor, value=value)
        if behaviour.actor is not None:
            steps["actor"] = GroupStep(behaviour.actor)
        if behaviour.value is not None:
            steps["critic"] = GroupStep(behaviour.value)
        metrics.update(behaviour.metrics)
    return steps, metrics, observed, behaviour


def compute_dreamer_loss(
    model: Model,
    inputs: DreamerInputs,
    call: CallState | None = None,
    learner: str | None = None,
    max_imagination_steps: int = 256,
) -> DreamerResult:
    """The request's losses and, with `apply_update`, one transactional learner step
    (`service.runtime.dreamer.update`): a refused step, or a caller that gave up, changes
    nothing."""
    world_model_of(model)
    call = call or CallState()
    started = time.perf_counter()
    reparameterised_actor = inputs.loss in ("dreamer_v3_actor", "dreamer_v3") and not bool(
        inputs.actor_knobs.get("use_reinforce", False)
    )
    if reparameterised_actor and is_categorical(model):
        field = "dreamer_v3.actor" if inputs.loss == "dreamer_v3" else inputs.loss
        raise InvalidArgument(
            f"{field}.use_reinforce: model {model.name!r} has a categorical actor, whose sampled "
            "actions carry no gradient; set use_reinforce (REINFORCE, the paper's choice for "
            "discrete actions)"
        )
    if inputs.apply_update and inputs.imagined is not None and reparameterised_actor:
        raise FailedPrecondition(
            "imagined: the actor's dynamics-backprop gradient (use_reinforce false) runs through "
            "the server's own world model; with a client-imagined rollout set use_reinforce, or "
            "let the server imagine (send starting latents)"
        )
    with model.lock:
        version = model.parameter_version
        if inputs.expected_version is not None and inputs.expected_version != version:
            raise FailedPrecondition(
                f"expected_parameter_version: model {model.name!r} is at version {version}, "
                f"not {inputs.expected_version}"
            )
        require_version(model, version, inputs.min_version, learner)
        with torch.set_grad_enabled(inputs.apply_update):
            steps, terms, observed, behaviour = dreamer_losses(model, inputs, max_imagination_steps)
        total = sum(v for k, v in terms.items() if k.startswith("loss_"))
        assert isinstance(total, torch.Tensor)
        if not bool(torch.isfinite(total)):
            raise InvalidArgument(
                f"{inputs.loss}: the loss is not finite ({float(total)}) on finite inputs; its "
                f"terms: { {k: float(v) for k, v in terms.items() if k.startswith('loss_')} }"
            )
        if inputs.apply_update:
            state = training_state(model)
            if "critic" in steps:
                state.slow_critic_for(model)  # the slow critic starts as the critic before the step
            rate = float(inputs.value_knobs.get("slow_critic_rate", DEFAULT_SLOW_CRITIC_RATE))

            def commit() -> None:
                if behaviour is not None and behaviour.return_range is not None:
                    state.return_low, state.return_high = (
                        t.detach().clone() for t in behaviour.return_range
                    )
                if "critic" in steps:
                    soft_update(state.slow_critic_for(model), model.value_network, rate)
                state.updates += 1
                model.commit_version()

            apply_dreamer_update(model, steps, call, commit)
        new_version = model.parameter_version
    metrics = {key: float(value.detach()) for key, value in terms.items()}
    for name, step in steps.items():
        metrics[f"grad_norm_{name}"] = step.grad_norm
    posterior = None
    if inputs.return_posterior and observed is not None:
        shape = inputs.batch_shape
        posterior = {
            "state": observed.state.detach().reshape(*shape, *observed.state.shape[1:]),
            "belief": observed.belief.detach().reshape(*shape, *observed.belief.shape[1:]),
        }
    return DreamerResult(
        loss=float(total.detach()),
        metrics=metrics,
        parameter_version=version,
        new_parameter_version=new_version,
        updated=inputs.apply_update,
        grad_norm=math.sqrt(sum(s.grad_norm**2 for s in steps.values())),
        network_ms=(time.perf_counter() - started) * 1e3,
        posterior=posterior,
    )
