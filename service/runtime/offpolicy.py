"""ComputeLoss for off-policy losses: a replay sample, the server's Q-networks, their targets, SAC's
temperature, and (with apply_update) one transactional step that also moves the targets.

Under the model's lock, in order: check the model against the loss (Q-network kind, ensemble,
actor) → bind the networks → the loss → with apply_update, `service.runtime.update.apply_update`
with the temperature's optimizer and the target update inside the same transaction (all or
nothing; finite; nothing after the caller gave up; the version increases once) → the counters
(hard-update counter, updates so far, temperature updates) in the commit.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

from service.dtypes import dtype_name
from service.errors import ArgumentError, FailedPrecondition, InvalidArgument
from service.losses._offpolicy import Networks, OffPolicyKind, Transitions
from service.models.model import Model
from service.models.qvalue import TargetUpdateSpec
from service.runtime.call import CallState
from service.runtime.estimation import EstimatorSpec, run_estimator
from service.runtime.loss import FIELD_OF_ARGUMENT, LossInputs, LossResult
from service.runtime.networks import policy
from service.runtime.targets import move_targets, next_counter, target_pairs, will_move
from service.runtime.trajectory import Trajectory
from service.runtime.update import Extras, apply_update
from service.runtime.versions import require_version


def _check_model(model: Model, name: str, kind: OffPolicyKind, options: dict) -> None:
    """FAILED_PRECONDITION unless the model has what the loss needs."""
    spec = model.manifest.qvalue_network
    if model.qvalue_network is None or spec is None:
        raise FailedPrecondition(
            f"model {model.name!r} has no qvalue_network; {name} needs a {kind.qvalue_kind} "
            "Q-network (manifest key qvalue_network)"
        )
    if spec.kind != kind.qvalue_kind:
        raise FailedPrecondition(
            f"{name}: needs a {kind.qvalue_kind} Q-network, model {model.name!r} has a {spec.kind}"
        )
    if kind.single_qvalue and spec.ensemble_size != 1:
        raise FailedPrecondition(
            f"{name}: needs a Q-network ensemble of 1, model {model.name!r} has "
            f"{spec.ensemble_size}"
        )
    if kind.ensemble_of_two and spec.ensemble_size != 2:
        raise FailedPrecondition(
            f"{name}: needs a Q-network ensemble of 2, model {model.name!r} has "
            f"{spec.ensemble_size}"
        )
    wanted = options.pop("num_qvalue_nets", None)
    if wanted is not None and int(wanted) != spec.ensemble_size:
        raise InvalidArgument(
            f"{name}.num_qvalue_nets: expected the model's ensemble size {spec.ensemble_size}, "
            f"got {int(wanted)}"
        )
    if kind.value_network and model.value_network is None:
        raise FailedPrecondition(f"{name}: model {model.name!r} has no value network (V(s))")
    if kind.actor:
        action = model.manifest.action
        if model.actor_network is None or action is None:
            raise FailedPrecondition(f"{name}: model {model.name!r} has no actor network")
        if action.distribution not in kind.actor:
            raise FailedPrecondition(
                f"{name}: needs a {' or '.join(kind.actor)} actor, model {model.name!r} has a "
                f"{action.distribution} one"
            )


def _inputs(
    model: Model, tensors: dict[str, torch.Tensor], field: str, steps: tuple[int, ...]
) -> list[torch.Tensor]:
    expected = [spec.name for spec in model.manifest.inputs]
    if sorted(tensors) != sorted(expected):
        raise InvalidArgument(
            f"{field}: expected keys {sorted(expected)} (model {model.name!r}), got "
            f"{sorted(tensors)}"
        )
    rows = []
    for spec in model.manifest.inputs:
        tensor, name = tensors[spec.name], f"{field}[{spec.name!r}]"
        shape = (*steps, *spec.shape)
        if tuple(tensor.shape) != shape:
            raise InvalidArgument(
                f"{name}: expected shape {list(shape)} (the reward's [*B] + the input's shape), "
                f"got {list(tensor.shape)}"
            )
        wanted = model.input_dtype(spec.name)
        if tensor.dtype != wanted:
            raise InvalidArgument(
                f"{name}: expected dtype {dtype_name(wanted)}, got {dtype_name(tensor.dtype)}"
            )
        rows.append(tensor.reshape(math.prod(steps), *spec.shape))
    return rows


def _finite_rows(tensor: torch.Tensor, name: str, used: torch.Tensor | None = None) -> None:
    if not tensor.is_floating_point():
        return
    bad = ~torch.isfinite(tensor.reshape(tensor.shape[0], -1)).all(-1)
    if used is not None:
        bad &= used
    if bool(bad.any()):
        raise InvalidArgument(
            f"{name}: expected finite values, got NaN/Inf in row {int(bad.nonzero()[0])}"
        )


def _returns(trajectory: Trajectory, spec: EstimatorSpec) -> Callable[[torch.Tensor], torch.Tensor]:
    """V(s′) [N] → the estimator's value target over the request's [*B, T] segments, [N]
    (the time dimension is the last of the reward's; TD(λ)'s recursion stops at done steps and at
    each segment's end)."""
    steps = trajectory.batch_shape
    if len(steps) < 1:
        raise InvalidArgument("trajectory.reward: n-step targets need a time dimension [*B, T]")

    def returns(next_value: torch.Tensor) -> torch.Tensor:
        bootstrap = next_value.detach().to("cpu").reshape(steps)
        _, target = run_estimator(
            spec,
            state_value=torch.zeros_like(bootstrap),  # the return does not depend on V(s)
            next_state_value=bootstrap,
            reward=trajectory.reward,
            done=trajectory.done,
            terminated=trajectory.terminated,
        )
        return target.reshape(-1).to(next_value.device, next_value.dtype)

    return returns


def transitions(
    model: Model,
    trajectory: Trajectory,
    kind: OffPolicyKind,
    estimator: EstimatorSpec | None = None,
) -> Transitions:
    """The request's [*B] transitions (or [*B, T] segments for an n-step `estimator`) as N rows
    on the model's device, checked."""
    steps = trajectory.batch_shape
    if trajectory.compact:
        raise InvalidArgument("trajectory.form: off-policy losses take the full form")
    if not trajectory.next_observation:
        raise InvalidArgument("trajectory.next_observation: required for off-policy losses")
    rows = math.prod(steps)
    inputs = _inputs(model, trajectory.observation, "trajectory.observation", steps)
    next_inputs = _inputs(model, trajectory.next_observation, "trajectory.next_observation", steps)
    reward = trajectory.reward.reshape(rows)
    terminated = trajectory.terminated.reshape(rows)
    _finite_rows(reward.unsqueeze(-1), "trajectory.reward")
    for spec, tensor in zip(model.manifest.inputs, inputs, strict=True):
        _finite_rows(tensor, f"trajectory.observation[{spec.name!r}]")
    for spec, tensor in zip(model.manifest.inputs, next_inputs, strict=True):
        # A terminated step's next observation never enters a target (NaN allowed there).
        _finite_rows(tensor, f"trajectory.next_observation[{spec.name!r}]", ~terminated)
    # Non-finite values (allowed at terminated steps only) become 0 so the networks run on
    # them; finite ones stay as sent (CQL's next-state proposals use every row).
    next_inputs = [
        torch.where(torch.isfinite(t), t, torch.zeros_like(t)) if t.is_floating_point() else t
        for t in next_inputs
    ]
    action = _action(model, trajectory, kind, steps, rows)
    device = model.device
    return Transitions(
        inputs=[t.to(device) for t in inputs],
        next_inputs=[t.to(device) for t in next_inputs],
        action=action.to(device),
        reward=reward.to(device),
        done=trajectory.done.reshape(rows).to(device),
        terminated=terminated.to(device),
        returns=_returns(trajectory, estimator) if estimator is not None else None,
    )


def _action(
    model: Model, trajectory: Trajectory, kind: OffPolicyKind, steps: tuple[int, ...], rows: int
) -> torch.Tensor:
    action = trajectory.action
    if action is None:
        raise InvalidArgument("trajectory.action: required for off-policy losses")
    spec = model.manifest.qvalue_network
    assert spec is not None
    if kind.qvalue_kind == "action_value":
        if tuple(action.shape) != steps or action.dtype not in (torch.int64, torch.int32):
            raise InvalidArgument(
                f"trajectory.action: expected action indices of shape {list(steps)} (the "
                f"reward's [*B]) in int64, got {list(action.shape)} {dtype_name(action.dtype)}"
            )
        flat = action.reshape(rows).to(torch.int64)
        outside = (flat < 0) | (flat >= spec.num_actions)
        if bool(outside.any()):
            row = int(outside.nonzero()[0])
            raise InvalidArgument(
                f"trajectory.action: expected indices in [0, {spec.num_actions}), got "
                f"{int(flat[row])} at flat index {row}"
            )
        return flat
    shape = tuple(model.manifest.action.shape) if model.manifest.action else ()
    expected = (*steps, *shape)
    if tuple(action.shape) != expected:
        raise InvalidArgument(
            f"trajectory.action: expected shape {list(expected)} ([*B] + the action shape), "
            f"got {list(action.shape)}"
        )
    if action.dtype != trajectory.dtype:
        raise InvalidArgument(
            f"trajectory.action: expected dtype {dtype_name(trajectory.dtype)} (the reward's), "
            f"got {dtype_name(action.dtype)}"
        )
    flat = action.reshape(rows, *shape)
    _finite_rows(flat, "trajectory.action")
    return flat


@contextmanager
def _frozen(network: nn.Module) -> Iterator[None]:
    """Evaluate `network` without recording gradients for its parameters (they still flow
    through its inputs): TorchRL's detached Q-parameters in the actor's loss."""
    parameters = [p for p in network.parameters() if p.requires_grad]
    for parameter in parameters:
        parameter.requires_grad_(False)
    try:
        yield
    finally:
        for parameter in parameters:
            parameter.requires_grad_(True)


def _bind(model: Model, dtype: torch.dtype, log_alpha: torch.Tensor | None) -> Networks:
    spec = model.manifest.qvalue_network
    assert spec is not None and model.qvalue_network is not None
    members, width = spec.ensemble_size, spec.width
    parameter_dtype = model.parameter_dtype

    def evaluate(network: nn.Module) -> Callable:
        def values(inputs: list[torch.Tensor], action: torch.Tensor | None) -> torch.Tensor:
            args = inputs if action is None else [*inputs, action.to(parameter_dtype)]
            out = network(*args)
            rows = args[0].shape[0]
            if out.numel() != rows * members * width:
                raise FailedPrecondition(
                    f"model {model.name!r}: its qvalue_network returned shape {list(out.shape)} "
                    f"for {rows} rows; the manifest says [N, ensemble_size={members}, {width}]"
                )
            return out.reshape(rows, members, width).to(dtype)

        return values

    online = evaluate(model.qvalue_network)
    target_network = model.target_qvalue_network
    assert target_network is not None
    target = evaluate(target_network)

    def frozen(inputs: list[torch.Tensor], action: torch.Tensor | None) -> torch.Tensor:
        with _frozen(model.qvalue_network):
            return online(inputs, action)

    def actor(inputs: list[torch.Tensor]) -> torch.distributions.Distribution:
        return policy(model, inputs, dtype)

    action = model.manifest.action
    has_actor = model.actor_network is not None and action is not None
    return Networks(
        qvalue=online,
        qvalue_frozen=frozen,
        target_qvalue=lambda i, a: target(i, a).detach(),
        actor=actor if has_actor else None,
        policy=_deterministic(model, model.actor_network, dtype) if has_actor else None,
        target_policy=_deterministic(model, model.target_actor_network, dtype)
        if has_actor
        else None,
        action_bounds=(action.low, action.high) if action is not None else (-1.0, 1.0),
        log_alpha=log_alpha,
        value=(lambda inputs: model.value(inputs).to(dtype))
        if model.value_network is not None
        else None,
    )


def _deterministic(model: Model, network: nn.Module | None, dtype: torch.dtype) -> Callable:
    """The deterministic action of a normal-family actor (DDPG, TD3): its location, squashed
    into [low, high] for tanh-normal: (high + low)/2 + (high − low)/2 · tanh(loc)."""
    spec = model.manifest.action
    assert spec is not None and network is not None

    def act(inputs: list[torch.Tensor]) -> torch.Tensor:
        out = network(*inputs)
        loc = (out[0] if isinstance(out, (tuple, list)) else out).to(dtype)
        if spec.distribution != "tanh_normal":
            return loc
        half, middle = (spec.high - spec.low) / 2, (spec.high + spec.low) / 2
        squashed = torch.tanh(loc)
        return squashed if (half, middle) == (1.0, 0.0) else middle + half * squashed

    return act


def _target_entropy(model: Model, name: str, options: dict) -> None:
    """Resolve "auto" (an unset `target_entropy`) as TorchRL does."""
    weight = options.pop("target_entropy_weight", 0.98)
    if "target_entropy" in options:
        return
    action = model.manifest.action
    assert action is not None
    if name == "discrete_sac":
        options["target_entropy"] = -float(math.log(1.0 / action.num_actions) * weight)
    else:
        options["target_entropy"] = -float(math.prod(action.shape))


def _alpha_optimizer(model: Model) -> torch.optim.Optimizer:
    """The temperature's own optimizer (the manifest's kind and learning rate), on first use."""
    if model.alpha_optimizer is None:
        assert model.offpolicy is not None
        spec = model.manifest.optimizer
        parameters = [model.offpolicy.log_alpha]
        if spec.name == "sgd":
            model.alpha_optimizer = torch.optim.SGD(parameters, lr=spec.lr, momentum=spec.momentum)
        else:
            model.alpha_optimizer = torch.optim.Adam(parameters, lr=spec.lr)
    return model.alpha_optimizer


def compute_offpolicy_loss(
    model: Model,
    trajectory: Trajectory,
    inputs: LossInputs,
    call: CallState | None = None,
    learner: str | None = None,
) -> LossResult:
    """An off-policy loss and, with apply_update, one transactional step (module docstring)."""
    name = inputs.loss.name
    kind = inputs.loss.kind.offpolicy
    assert kind is not None
    options = dict(inputs.loss.options)
    _check_model(model, name, kind, options)
    call = call or CallState()
    started = time.perf_counter()
    batch = transitions(model, trajectory, kind, inputs.offpolicy_estimator)
    rule: TargetUpdateSpec = inputs.target_update or model.manifest.target_update
    seed = options.pop("seed", None)
    delay = int(options.pop("policy_update_delay", 2)) if kind.delayed_policy else 1
    target_networks = kind.target_networks(options)
    alpha_init = options.pop("alpha_init", None)
    fixed_alpha = bool(options.pop("fixed_alpha", False))
    if kind.temperature:
        _target_entropy(model, name, options)
    with model.lock:
        version = model.parameter_version
        if inputs.expected_version is not None and inputs.expected_version != version:
            raise FailedPrecondition(
                f"expected_parameter_version: model {model.name!r} is at version {version}, "
                f"not {inputs.expected_version}"
            )
        require_version(model, version, inputs.min_version, learner)
        state = model.offpolicy
        assert state is not None
        log_alpha = None
        seeded_alpha = None
        if kind.temperature:
            log_alpha = state.log_alpha
            if alpha_init is not None and int(state.alpha_updates) == 0:
                seeded_alpha = math.log(alpha_init)
                log_alpha = torch.full_like(log_alpha, seeded_alpha)
                if inputs.apply_update and not fixed_alpha:
                    log_alpha = log_alpha.requires_grad_(True)
            if fixed_alpha or not inputs.apply_update:
                log_alpha = log_alpha.detach()
        generator = None
        if kind.samples and seed is not None:
            generator = torch.Generator(device=model.device)
            generator.manual_seed(int(seed))
        if generator is not None:
            options["generator"] = generator
        nets = _bind(model, trajectory.dtype, log_alpha)
        with torch.set_grad_enabled(inputs.apply_update):
            try:
                out = inputs.loss.kind.function(nets, batch, **options)
            except ArgumentError as error:
                field = FIELD_OF_ARGUMENT.get(error.argument, f"{name}.{error.argument}")
                raise InvalidArgument.from_argument(error, field) from error
        total = out.pop("loss")
        td_error = out.pop("td_error")
        # TD3: the actor learns, and the targets move, on every `delay`-th update only (the
        # update counter says which update this is).
        updates_actor = (int(state.qvalue_updates) + 1) % delay == 0
        if inputs.apply_update and not updates_actor:
            total = out["loss_qvalue"]
        if not bool(torch.isfinite(total)):
            raise InvalidArgument(
                f"{name}: the loss is not finite ({float(total)}) on finite inputs; its terms: "
                f"{ {k: float(v) for k, v in out.items() if k.startswith('loss_')} }"
            )
        grad_norm, moved = 0.0, False
        if inputs.apply_update:
            counter = int(state.target_update_counter)
            moved = updates_actor and bool(target_networks) and will_move(rule, counter)
            targets, sources = target_pairs(model, target_networks) if moved else ([], [])
            steps_alpha = kind.temperature and not fixed_alpha
            extras = Extras(
                optimizers=[(_alpha_optimizer(model), [state.log_alpha])] if steps_alpha else [],
                changed=targets,
                after_step=(lambda: move_targets(rule, targets, sources)) if moved else None,
            )
            if steps_alpha and seeded_alpha is not None:
                # The request's alpha_init seeds the model's α: its gradient is the seed's.
                seed_tensor = log_alpha

                def seed_alpha() -> None:
                    with torch.no_grad():
                        state.log_alpha.copy_(seed_tensor.detach())
                    state.log_alpha.grad = seed_tensor.grad

                extras.before_step = seed_alpha

            def commit() -> None:
                if updates_actor:
                    state.target_update_counter.fill_(next_counter(rule, counter))
                state.qvalue_updates.add_(1)
                if steps_alpha:
                    state.alpha_updates.add_(1)
                model.commit_version()

            grad_norm = apply_update(model, total, call, commit, extras)
        new_version = model.parameter_version
    metrics = {key: float(value.detach()) for key, value in out.items()}
    if "td_error_mean" in metrics:  # TorchRL's metadata name, beside the per-sample tensor
        metrics["td_error"] = metrics.pop("td_error_mean")
    return LossResult(
        loss=float(total.detach()),
        metrics=metrics,
        parameter_version=version,
        new_parameter_version=new_version,
        updated=inputs.apply_update,
        grad_norm=grad_norm,
        network_ms=(time.perf_counter() - started) * 1e3,
        estimator_ms=0.0,
        td_error=td_error.detach().to("cpu").reshape(trajectory.batch_shape)
        if inputs.return_td_error
        else None,
        targets_updated=moved,
    )
