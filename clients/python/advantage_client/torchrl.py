"""TorchRL drop-in: value estimators whose recursion runs on advantage-service.

    from advantage_client import AdvantageClient
    from advantage_client.torchrl import RemoteGAE

    client = AdvantageClient("localhost:50051", timeout=10)
    loss = ClipPPOLoss(actor, critic)
    loss.make_value_estimator(RemoteGAE(client, gamma=0.99, lmbda=0.95, value_network=critic))
    # or the class with its arguments, or for_loss (the loss's critic as value network)
    loss.make_value_estimator(RemoteGAE, client=client, gamma=0.99, lmbda=0.9, value_network=critic)
    loss.make_value_estimator(RemoteGAE.for_loss(loss, client=client, gamma=0.99, lmbda=0.95))

`RemoteTD0`, `RemoteTD1`, `RemoteTDLambda`, `RemoteGAE`, `RemoteMultiAgentGAE` and
`RemoteVTrace` are subclasses of TorchRL's `TD0Estimator`, `TD1Estimator`, `TDLambdaEstimator`,
`GAE`, `MultiAgentGAE` and `VTrace` (so they are
`ValueEstimatorBase` modules, and ``isinstance(RemoteGAE(...), GAE)`` holds). They keep
TorchRL's keyword arguments, its keys (`set_keys`: advantage, value_target, value, reward, done,
terminated, steps_to_next_obs, sample_log_prob; nested keys such as ``("agents", "reward")``),
its ``time_dim`` rule (the argument, the attribute, a dimension named ``"time"``, else the last
batch dimension) and its ``[*B, T, *F]`` shapes, and they write ``advantage`` and
``value_target`` (and the state values they obtained) into the tensordict in place, as TorchRL
does. Only the estimator's recursion moves to the server:

- **values**: with a ``value_network`` (given, or the loss's critic through ``for_loss``)
  the values are computed here, exactly as
  TorchRL computes them, and sent; without one, the values in the tensordict (``value`` and
  ``("next", value)``) are sent; when there are none, the server's value network computes them
  from the observations (the model's input keys, at the root and under ``"next"``) and they are
  written back under the value key (``("next", value)`` is 0 at terminated steps, where the
  server does not evaluate it: that bootstrap is never used).
- **the recursion** (and ``average_gae`` / ``average_adv``) runs on the server, on ``[*B', T]``
  arrays: the time dimension moved last, the other batch dimensions and the feature dimensions
  in front of it (a trailing feature dimension of size 1 is dropped and restored).
  ``average_rewards`` standardises the rewards here and writes them back, as TorchRL does.
- **V-trace**: the behaviour log-probability is read under ``sample_log_prob``, the current
  policy's is computed with the ``actor_network`` here (TorchRL's way) and sent as ``log_prob``.

Not supported (refused when the estimator is built, naming the argument): ``differentiable=True``
(no gradient crosses the wire), ``group_key`` and ``auto_reset_env``; ``shifted=True`` (one
value-network call, TorchRL's way) works except with ``average_gae``.
``vectorized`` is accepted and has no effect (the server runs one algorithm).
Every ``ValueEstimators`` member, and the names (``"GAE"``, ``"MAGAE"``, ``"td_lambda"``, …),
pick a class in
`remote_value_estimator` and `remote_estimator_class`.

Needs the ``torchrl`` extra (``pip install 'advantage-client[torchrl]'``).
"""

from __future__ import annotations

import enum
from contextlib import nullcontext
from typing import Any, ClassVar

import torch
from tensordict import TensorDictBase, is_tensor_collection
from tensordict.nn import dispatch, set_skip_existing
from torchrl.objectives.utils import hold_out_net
from torchrl.objectives.value import (
    GAE,
    MultiAgentGAE,
    TD0Estimator,
    TD1Estimator,
    TDLambdaEstimator,
    VTrace,
)

from advantage_client import options
from advantage_client.options import EstimatorLike, estimator_from

__all__ = [
    "RemoteGAE",
    "RemoteMultiAgentGAE",
    "RemoteTD0",
    "RemoteTD1",
    "RemoteTDLambda",
    "RemoteVTrace",
    "remote_estimator_class",
    "remote_value_estimator",
]

# TorchRL options the service has no counterpart for: refused rather than silently ignored.
_UNSUPPORTED = {
    "group_key": "the service standardises over the whole batch, not within groups",
    "auto_reset_env": "the service does not add the truncation bootstrap to the reward",
}


def _refuse_unsupported(name: str, kwargs: dict[str, Any]) -> None:
    if kwargs.get("differentiable"):
        raise ValueError(
            f"{name}: differentiable=True is not possible for a remote estimator (no gradient "
            "crosses the wire); use TorchRL's estimator for a differentiable target"
        )
    for key, why in _UNSUPPORTED.items():
        if kwargs.get(key):
            raise ValueError(f"{name}: {key}={kwargs[key]!r} is not supported ({why})")


class _PerStep:
    """Moves TorchRL's per-step tensors [*batch, *F] (time at `time_dim` of the batch) to the
    contract's [*B', T] and back.

    A trailing feature dimension of size 1 (TorchRL's [*B, T, 1]) is dropped, so that the
    per-step arrays line up with observations [*B, T, *obs]; any other feature dimensions
    (e.g. agents) join the batch in front of T.
    """

    def __init__(self, batch_size: torch.Size, time_dim: int) -> None:
        self.batch = tuple(batch_size)
        self.time_dim = time_dim

    def to_wire(self, x: torch.Tensor, name: str) -> torch.Tensor:
        shape = tuple(x.shape)
        if shape[: len(self.batch)] != self.batch:
            raise ValueError(
                f"{name}: expected a shape starting with the tensordict's batch size "
                f"{list(self.batch)}, got {list(shape)}"
            )
        if shape == (*self.batch, 1):
            x = x.squeeze(-1)
        return x.movedim(self.time_dim, -1)

    def from_wire(self, x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """`x` back in `like`'s layout ([*batch, *F])."""
        if tuple(like.shape) == (*self.batch, 1):
            return x.movedim(-1, self.time_dim).unsqueeze(-1)
        return x.movedim(-1, self.time_dim).reshape(like.shape)

    def observation(self, x: torch.Tensor) -> torch.Tensor:
        """An observation [*batch, *obs] → [*B', T, *obs] (time last among the batch dims)."""
        return x.movedim(self.time_dim, len(self.batch) - 1)


def _coefficient(value: torch.Tensor, per_step: _PerStep, name: str) -> float | torch.Tensor:
    """γ or λ as the option objects take them: a float (one value), or per-step [*B', T]."""
    if value.numel() == 1:
        return float(value.reshape(()).item())
    return per_step.to_wire(value, name)


class _RemoteEstimator:
    """What the remote estimators share: the client, the call, and TorchRL's plumbing around it.

    Subclasses put this class first among their bases, before the TorchRL estimator they stand
    for, and build their option object (the request's estimator and knobs) in `_knobs`.
    """

    #: Whether the current policy's log-probability is needed (V-trace).
    _needs_log_probs: ClassVar[bool] = False
    #: Whether the values must come from this side (the server's network cannot give them).
    _needs_values: ClassVar[bool] = False
    #: TD(0), TD(1), TD(λ) with average_rewards: the floor of the rewards' std (TorchRL's).
    _reward_std_floor: ClassVar[float] = 1e-5

    def _remote_init(self, client: Any, model: str, timeout: float | None) -> None:
        if not hasattr(client, "compute_advantage") or getattr(client, "_awaits", False):
            raise TypeError(
                f"{type(self).__name__}: client must be an advantage_client.AdvantageClient "
                f"(TorchRL calls estimators synchronously), got {type(client).__name__}"
            )
        self.__dict__["client"] = client  # not a module: kept out of nn.Module's registries
        self.model = model
        self.timeout = timeout
        self._input_keys: tuple[str, ...] | None = None

    def _knobs(self, per_step: _PerStep, gamma: torch.Tensor) -> options.EstimatorOptions:
        raise NotImplementedError

    def _signals(
        self,
        reward: torch.Tensor,
        done: torch.Tensor,
        terminated: torch.Tensor,
        value: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Reward, done and terminated in the value's shape: unchanged (see MultiAgentGAE)."""
        return reward, done, terminated

    def _values(
        self, tensordict: TensorDictBase, params: Any, target_params: Any
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """(V(s), V(s')) as TorchRL obtains them: the value network here, else the
        tensordict's; (None, None) leaves them to the server."""
        if self.value_network is not None:
            if params is not None:
                params = params.detach()
                if target_params is None:
                    target_params = params.clone(False)
            holding = params is None and target_params is None
            with hold_out_net(self.value_network) if holding else nullcontext():
                value, next_value, valid = self._call_value_nets(
                    data=tensordict,
                    params=params,
                    next_params=target_params,
                    single_call=self.shifted,
                    value_key=self.tensor_keys.value,
                    detach_next=True,
                    vmap_randomness=self.vmap_randomness,
                )
            if valid is not None:  # shifted=True: the samples the one call could keep
                tensordict.set("shifted_valid", valid)
            return value, next_value
        value = tensordict.get(self.tensor_keys.value, None)
        next_value = tensordict.get(("next", self.tensor_keys.value), None)
        if (value is None) != (next_value is None):
            missing = self.tensor_keys.value if value is None else ("next", self.tensor_keys.value)
            raise KeyError(
                f"{type(self).__name__}: the tensordict has one state value but not {missing!r}; "
                "give both, or neither (the server then computes them), or a value_network"
            )
        return value, next_value

    def _log_probs(self, tensordict: TensorDictBase, like: torch.Tensor) -> dict[str, Any]:
        """V-trace: behaviour (sample_log_prob) and current-policy log-probabilities."""
        return {}

    def _observations(self, tensordict: TensorDictBase, per_step: _PerStep) -> dict[str, Any]:
        """The model's inputs at the root and under "next", for server-computed values."""
        if self._input_keys is None:
            info = self.client.get_model(self.model, timeout=self.timeout)
            self._input_keys = tuple(info.input_keys)
        observation, next_observation = {}, {}
        for key in self._input_keys:
            for source, target, where in (
                (key, observation, "root"),
                (("next", key), next_observation, '"next"'),
            ):
                value = tensordict.get(source, None)
                if value is None:
                    raise KeyError(
                        f"{type(self).__name__}: no value network and no state values, so the "
                        f"server computes them from its model's inputs; the tensordict has no "
                        f"{key!r} at the {where}"
                    )
                target[key] = per_step.observation(value)
        return {"observation": observation, "next_observation": next_observation}

    @dispatch
    def forward(
        self,
        tensordict: TensorDictBase,
        *,
        params: TensorDictBase | None = None,
        target_params: TensorDictBase | None = None,
        time_dim: int | None = None,
    ) -> TensorDictBase:
        """Compute the advantage and value target on the server; write them into `tensordict`.

        Same call as TorchRL's estimator: `tensordict` has batch size [*B, T] (time at
        `time_dim`), ``("next", reward)``, ``("next", done)``, ``("next", terminated)`` (absent
        = done), observations or state values; ``params``/``target_params`` are the value
        network's (functional losses pass them). Returns `tensordict`, with ``advantage`` and
        ``value_target`` set (and the state values when this call obtained them).
        """
        skip = self.skip_existing
        with set_skip_existing(skip) if skip is not None else nullcontext(), torch.no_grad():
            return self._forward(tensordict, params, target_params, time_dim)

    def _forward(
        self,
        tensordict: TensorDictBase,
        params: Any,
        target_params: Any,
        time_dim: int | None,
        values: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> TensorDictBase:
        if tensordict.batch_dims < 1:
            raise RuntimeError(
                "Expected input tensordict to have at least one dimension, got "
                f"tensordict.batch_size = {tensordict.batch_size}"
            )
        keys = self.tensor_keys
        reward = tensordict.get(("next", keys.reward))
        if getattr(self, "average_rewards", False):
            # TorchRL standardises the rewards over the batch and writes them back (later
            # code reads them); the standardised rewards are what is sent.
            reward = (reward - reward.mean()) / reward.std().clamp_min(self._reward_std_floor)
            tensordict.set(("next", keys.reward), reward)
        per_step = _PerStep(tensordict.batch_size, self._get_time_dim(time_dim, tensordict))
        gamma = self.gamma.to(reward.device)
        steps_to_next_obs = tensordict.get(keys.steps_to_next_obs, None)
        if steps_to_next_obs is not None:
            gamma = gamma ** steps_to_next_obs.view_as(reward)
        if values is None:
            values = self._values(tensordict, params, target_params)
        value, next_value = values
        # shifted=True: TorchRL's own steps, the last kept sample of each row made a boundary
        # (done, not terminated: it bootstraps), the dropped ones zeroed afterwards.
        valid = tensordict.get("shifted_valid", None)
        if valid is not None and getattr(self, "average_gae", False):
            raise ValueError(
                f"{type(self).__name__}: average_gae with shifted=True is not supported (TorchRL "
                "standardises over the kept samples only)"
            )
        signals = self._prepare_shifted_tensordict(tensordict, valid, per_step.time_dim)
        reward = signals.get(("next", keys.reward))
        done = signals.get(("next", keys.done))
        terminated = signals.get(("next", keys.terminated), done)
        if value is not None:
            reward, done, terminated = self._signals(reward, done, terminated, value)
        elif self._needs_values:
            raise KeyError(
                f"{type(self).__name__}: needs the state values, from a value_network or "
                f"under {self.tensor_keys.value!r} and ('next', {self.tensor_keys.value!r})"
            )
        arrays: dict[str, Any] = {
            "reward": per_step.to_wire(reward, "reward"),
            "done": per_step.to_wire(done, "done"),
            "terminated": per_step.to_wire(terminated, "terminated"),
        }
        if value is None:
            arrays.update(self._observations(tensordict, per_step))
        else:
            arrays["state_value"] = per_step.to_wire(value, "state_value")
            arrays["next_state_value"] = per_step.to_wire(next_value, "next state_value")
        if self._needs_log_probs:
            arrays.update(self._log_probs(tensordict, reward if value is None else value))
            arrays = {
                name: per_step.to_wire(x, name) if name.endswith("log_prob") else x
                for name, x in arrays.items()
            }
        result = self.client.compute_advantage(
            estimator=self._knobs(per_step, gamma),
            model=self.model,
            timeout=self.timeout,
            **arrays,
        )
        like = reward if value is None else value
        tensordict.set(keys.advantage, per_step.from_wire(result.advantage, like))
        tensordict.set(keys.value_target, per_step.from_wire(result.value_target, like))
        if value is None:
            tensordict.set(keys.value, per_step.from_wire(result.state_value, reward))
            next_value = per_step.from_wire(result.next_state_value, reward)
            tensordict.set(("next", keys.value), next_value)
        self._mask_shifted_output(tensordict, valid)
        return tensordict

    #: Whether the value target needs V(s) (GAE's target is A + V(s)); TD(0), TD(1) and TD(λ)
    #: targets use V(s') only.
    _target_needs_value: ClassVar[bool] = True

    def value_estimate(
        self,
        tensordict: TensorDictBase,
        target_params: TensorDictBase | None = None,
        next_value: torch.Tensor | None = None,
        time_dim: int | None = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        """The value target alone (TorchRL's `value_estimate`); the caller's tensordict is not
        written.

        TD(0), TD(1), TD(λ): as TorchRL, from V(s') only: `next_value` when given, else the
        value network on ``"next"`` (with `target_params`, TorchRL's `_next_value`), else
        ``("next", value)``. The server needs a V(s) too; it gets zeros, which enter the
        advantage only. GAE and V-trace: `forward` on a shallow copy (``params=`` is taken).
        """
        data = tensordict.copy()
        if self._target_needs_value:
            if next_value is not None:
                raise TypeError(
                    f"{type(self).__name__}.value_estimate: next_value is not supported (the "
                    "target needs V(s) as well); put the values in the tensordict"
                )
            params = kwargs.pop("params", None)
            out = self._forward(data, params, target_params, time_dim)
        else:
            if next_value is None:
                next_value = self._next_value(data, target_params, kwargs)
            if next_value is None:
                raise KeyError(
                    f"{type(self).__name__}.value_estimate: no next value under "
                    f"{('next', self.tensor_keys.value)!r}; set the value key "
                    "(estimator.set_keys(value=...), or the loss's set_keys) or pass next_value"
                )
            values = (torch.zeros_like(next_value), next_value)
            out = self._forward(data, None, None, time_dim, values=values)
        return out.get(self.tensor_keys.value_target)


def _check_scalar(name: str, value: Any) -> float | None:
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            shape = list(value.shape)
            raise ValueError(f"{name}: expected one value, got a tensor of shape {shape}")
        return float(value.item())
    return value


class _RemoteGammaEstimator(_RemoteEstimator):
    """The constructor and knobs of the γ-only estimators (TD(0), TD(1)); `_options` is the
    client's option class for the estimator."""

    _target_needs_value = False
    _options: type[options.TD0] | type[options.TD1]

    def __init__(
        self,
        client: Any,
        *,
        gamma: float | torch.Tensor,
        value_network: Any = None,
        average_rewards: bool = False,
        model: str = "",
        timeout: float | None = None,
        **kwargs: Any,
    ) -> None:
        _refuse_unsupported(type(self).__name__, kwargs)
        super().__init__(
            gamma=gamma, value_network=value_network, average_rewards=average_rewards, **kwargs
        )
        self._remote_init(client, model, timeout)

    def _knobs(self, per_step: _PerStep, gamma: torch.Tensor) -> options.EstimatorOptions:
        return self._options(gamma=_coefficient(gamma, per_step, "gamma"))


class RemoteTD0(_RemoteGammaEstimator, TD0Estimator):
    """TorchRL's `TD0Estimator` with the TD(0) target computed by advantage-service.

    Args:
        client: an `advantage_client.AdvantageClient`.
        gamma: the discount (a float or a one-element tensor).
        value_network: the critic run here (None: the tensordict's values, else the server's).
        average_rewards: standardise the rewards over the batch first, and write them back
            into the tensordict, as TorchRL does.
        model: the server's model ("" = its default); used for server-computed values.
        timeout: the call's deadline in seconds (None = the client's).
        **kwargs: TorchRL's other keyword arguments (skip_existing, device, value_chunk_size,
            …); differentiable, group_key and auto_reset_env are refused.
    """

    _options = options.TD0


class RemoteTD1(_RemoteGammaEstimator, TD1Estimator):
    """TorchRL's `TD1Estimator` with the TD(1) target computed by advantage-service.

    Arguments as `RemoteTD0`'s.
    """

    _options = options.TD1


class RemoteTDLambda(_RemoteEstimator, TDLambdaEstimator):
    """TorchRL's `TDLambdaEstimator` with the λ-return computed by advantage-service.

    Arguments as `RemoteTD0`'s, plus ``lmbda`` (a float or a one-element tensor).
    """

    _target_needs_value = False
    _reward_std_floor = 1e-4  # TorchRL's TD(λ) clamps at 1e-4, TD(0) and TD(1) at 1e-5

    def __init__(
        self,
        client: Any,
        *,
        gamma: float | torch.Tensor,
        lmbda: float | torch.Tensor,
        value_network: Any = None,
        average_rewards: bool = False,
        model: str = "",
        timeout: float | None = None,
        **kwargs: Any,
    ) -> None:
        _refuse_unsupported(type(self).__name__, kwargs)
        super().__init__(
            gamma=gamma,
            lmbda=lmbda,
            value_network=value_network,
            average_rewards=average_rewards,
            **kwargs,
        )
        self._remote_init(client, model, timeout)

    def _knobs(self, per_step: _PerStep, gamma: torch.Tensor) -> options.EstimatorOptions:
        return options.TDLambda(
            gamma=_coefficient(gamma, per_step, "gamma"),
            lmbda=_coefficient(self.lmbda, per_step, "lmbda"),
        )


class RemoteGAE(_RemoteEstimator, GAE):
    """TorchRL's `GAE` with the advantage computed by advantage-service.

    Arguments as `RemoteTD0`'s, plus ``lmbda`` (a float or a one-element tensor), ``average_gae``
    (standardise the advantage over the batch, on the server) and ``time_dim``.
    """

    def __init__(
        self,
        client: Any,
        *,
        gamma: float | torch.Tensor,
        lmbda: float | torch.Tensor,
        value_network: Any = None,
        average_gae: bool = False,
        model: str = "",
        timeout: float | None = None,
        **kwargs: Any,
    ) -> None:
        _refuse_unsupported(type(self).__name__, kwargs)
        super().__init__(
            gamma=gamma,
            lmbda=lmbda,
            value_network=value_network,
            average_gae=average_gae,
            **kwargs,
        )
        self._remote_init(client, model, timeout)

    def _knobs(self, per_step: _PerStep, gamma: torch.Tensor) -> options.EstimatorOptions:
        return options.GAE(
            gamma=_coefficient(gamma, per_step, "gamma"),
            lmbda=_coefficient(self.lmbda, per_step, "lmbda"),
            average_gae=bool(self.average_gae),
        )


class RemoteVTrace(_RemoteEstimator, VTrace):
    """TorchRL's `VTrace` with the V-trace targets computed by advantage-service.

    Args:
        client, gamma, value_network, model, timeout: as `RemoteTD0`'s.
        actor_network: the current policy, run here for log π (TorchRL's way); the behaviour
            policy's log μ is read under the ``sample_log_prob`` key.
        rho_thresh, c_thresh: ρ̄ and c̄ (floats or one-element tensors; default 1.0).
        average_adv: standardise the advantage over the batch (on the server).
        **kwargs: TorchRL's other keyword arguments, as `RemoteTD0`'s.
    """

    _needs_log_probs = True

    def __init__(
        self,
        client: Any,
        *,
        gamma: float | torch.Tensor,
        actor_network: Any,
        value_network: Any = None,
        rho_thresh: float | torch.Tensor = 1.0,
        c_thresh: float | torch.Tensor = 1.0,
        average_adv: bool = False,
        model: str = "",
        timeout: float | None = None,
        **kwargs: Any,
    ) -> None:
        _refuse_unsupported(type(self).__name__, kwargs)
        _check_scalar("rho_thresh", rho_thresh)
        _check_scalar("c_thresh", c_thresh)
        super().__init__(
            gamma=gamma,
            actor_network=actor_network,
            value_network=value_network,
            rho_thresh=rho_thresh,
            c_thresh=c_thresh,
            average_adv=average_adv,
            **kwargs,
        )
        self._remote_init(client, model, timeout)

    def _knobs(self, per_step: _PerStep, gamma: torch.Tensor) -> options.EstimatorOptions:
        return options.VTrace(
            gamma=_check_scalar("gamma", gamma),
            rho_thresh=_check_scalar("rho_thresh", self.rho_thresh),
            c_thresh=_check_scalar("c_thresh", self.c_thresh),
            average_adv=bool(self.average_adv),
        )

    def _log_probs(self, tensordict: TensorDictBase, like: torch.Tensor) -> dict[str, Any]:
        # TorchRL's own steps: log μ from the tensordict (a composite one summed), log π from
        # the actor on the root observations, both viewed as the value.
        from torchrl.objectives.utils import _maybe_get_or_select
        from torchrl.objectives.value.advantages import _call_actor_net

        log_mu = _maybe_get_or_select(tensordict, self.tensor_keys.sample_log_prob)
        if is_tensor_collection(log_mu):
            log_mu = log_mu.sum(dim="feature", reduce=True)
        with hold_out_net(self.actor_network):
            log_pi = _call_actor_net(
                actor_net=self.actor_network,
                data=tensordict,
                params=None,
                log_prob_key=self.tensor_keys.sample_log_prob,
            )
        return {"sample_log_prob": log_mu.view_as(like), "log_prob": log_pi.view_as(like)}


class RemoteMultiAgentGAE(RemoteGAE, MultiAgentGAE):
    """TorchRL's `MultiAgentGAE` with the advantage computed by advantage-service.

    Per-agent values ``[*B, T, n_agents, 1]`` with team-shared reward, done and terminated
    ``[*B, T, 1]``: the shared signals are broadcast along ``agent_dim`` here (TorchRL's rule),
    and the server runs GAE for every agent. Arguments as `RemoteGAE`'s, plus ``agent_dim``
    (default -2). The values must come from this side (a ``value_network`` or the tensordict);
    ``average_gae=True`` is refused (TorchRL standardises per agent, the server over the batch).
    """

    _needs_values = True

    def __init__(
        self,
        client: Any,
        *,
        gamma: float | torch.Tensor,
        lmbda: float | torch.Tensor,
        agent_dim: int = -2,
        **kwargs: Any,
    ) -> None:
        if kwargs.get("average_gae"):
            raise ValueError(
                "RemoteMultiAgentGAE: average_gae=True is not supported (TorchRL standardises "
                "per agent; the server standardises over the whole batch)"
            )
        super().__init__(client, gamma=gamma, lmbda=lmbda, **kwargs)
        self.agent_dim = agent_dim

    def _signals(
        self,
        reward: torch.Tensor,
        done: torch.Tensor,
        terminated: torch.Tensor,
        value: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self._prepare_signals(reward, done, terminated, value)


#: The remote class of each estimator, by the option class that names it.
_CLASSES: dict[type[options.EstimatorOptions], type[_RemoteEstimator]] = {
    options.TD0: RemoteTD0,
    options.TD1: RemoteTD1,
    options.TDLambda: RemoteTDLambda,
    options.GAE: RemoteGAE,
    options.VTrace: RemoteVTrace,
}


#: Names of TorchRL's multi-agent GAE (the service has no estimator of its own for it: it is GAE
#: on broadcast signals), lower case without underscores.
_MULTI_AGENT_NAMES = ("magae", "multiagentgae")


def remote_estimator_class(value_type: EstimatorLike) -> type[_RemoteEstimator]:
    """The remote class for a ``ValueEstimators`` member or a name: TorchRL's (``"GAE"``,
    ``"TDLambda"``, ``"TDLambdaEstimator"``, ``"MAGAE"``, ``"MultiAgentGAE"``, …) or the
    service's (``"td_lambda"``, …), case and underscores ignored.

    Raises:
        ValueError: an unknown name. TypeError: a value of another kind.
    """
    name = value_type.name if isinstance(value_type, enum.Enum) else value_type
    if isinstance(name, str) and name.lower().replace("_", "") in _MULTI_AGENT_NAMES:
        return RemoteMultiAgentGAE
    return _CLASSES[type(estimator_from(value_type))]


def remote_value_estimator(
    value_type: EstimatorLike, client: Any, **hyperparams: Any
) -> _RemoteEstimator:
    """``remote_value_estimator(ValueEstimators.TDLambda, client, gamma=0.99, lmbda=0.95)``:
    the remote estimator `value_type` names, built with `hyperparams` (its class's arguments)."""
    return remote_estimator_class(value_type)(client, **hyperparams)
