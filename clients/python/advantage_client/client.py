"""Synchronous client (a grpc channel)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import grpc

from advantage_client._loss import (
    check_loss_knobs,
    decode_loss_response,
    needs_model_info,
    prepare_loss,
)
from advantage_client._parameters import (
    MAX_CHUNK_BYTES,
    ParameterAssembler,
    parameters_request,
    set_parameters_stream,
    strip_prefix,
)
from advantage_client._pb.advantage.v1 import advantage_pb2 as pb
from advantage_client._pb.advantage.v1 import advantage_pb2_grpc as pb_grpc
from advantage_client._request import check_knobs, decode_response, needs_input_keys, prepare
from advantage_client.errors import from_rpc_error
from advantage_client.types import AdvantageResult, LossResult, ModelInfo, Parameters

if TYPE_CHECKING:
    import torch
    from tensordict import TensorDictBase

    from advantage_client._loss import Loss
    from advantage_client._parameters import As
    from advantage_client._request import Estimator, Form

__all__ = ["DEFAULT_MAX_MESSAGE_MB", "AdvantageClient", "channel_options"]

#: Default cap on request and response sizes, in MiB (gRPC's own default is 4 MiB).
DEFAULT_MAX_MESSAGE_MB = 256.0


def channel_options(
    max_message_mb: float, options: Sequence[tuple[str, Any]]
) -> list[tuple[str, Any]]:
    """Channel arguments: send/receive limits from `max_message_mb`, then the caller's options."""
    if not max_message_mb > 0:
        raise ValueError(f"max_message_mb must be > 0, got {max_message_mb}")
    limit = min(int(max_message_mb * 1024 * 1024), 2**31 - 1)
    return [
        ("grpc.max_send_message_length", limit),
        ("grpc.max_receive_message_length", limit),
        *options,
    ]


class AdvantageClient:
    """Blocking client of advantage-service.

    Args:
        target: server address, e.g. ``"localhost:50051"``.
        timeout: default deadline of every call, in seconds (None = no deadline); a call's own
            ``timeout`` argument takes precedence.
        max_message_mb: largest request or response this client sends or accepts, in MiB.
        credentials: TLS credentials (``grpc.ssl_channel_credentials(...)``); None = plaintext.
        options: extra gRPC channel arguments, appended after the size limits.
        compression: channel-wide compression (e.g. ``grpc.Compression.Gzip``).
        token: bearer token for a server started with an auth token (sent as the
            ``authorization`` metadata of every call).

    Use as a context manager, or call `close()`. Failed calls raise
    `advantage_client.AdvantageServiceError` (a subclass per status code).
    """

    def __init__(
        self,
        target: str,
        *,
        timeout: float | None = None,
        max_message_mb: float = DEFAULT_MAX_MESSAGE_MB,
        credentials: grpc.ChannelCredentials | None = None,
        options: Sequence[tuple[str, Any]] = (),
        compression: grpc.Compression | None = None,
        token: str | None = None,
    ) -> None:
        opts = channel_options(max_message_mb, options)
        if credentials is None:
            self._channel = grpc.insecure_channel(target, options=opts, compression=compression)
        else:
            self._channel = grpc.secure_channel(
                target, credentials, options=opts, compression=compression
            )
        self._stub = pb_grpc.AdvantageServiceStub(self._channel)
        self._timeout = timeout
        # Sent with every call when the server requires a bearer token.
        self._metadata = (("authorization", f"Bearer {token}"),) if token else None
        self._models: dict[str, ModelInfo] = {}  # GetModel answers, for TensorDict inputs
        self.target = target

    # ---- lifecycle -----------------------------------------------------------------------------

    def close(self) -> None:
        """Close the channel; calls in flight are cancelled. Idempotent."""
        self._channel.close()

    def __enter__(self) -> AdvantageClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- RPCs ----------------------------------------------------------------------------------

    def _call(self, method: Any, request: Any, timeout: float | None) -> Any:
        try:
            return method(
                request,
                timeout=self._timeout if timeout is None else timeout,
                metadata=self._metadata,
            )
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from exc

    def list_models(self, *, timeout: float | None = None) -> list[ModelInfo]:
        """Every model the server holds, sorted by name."""
        response = self._call(self._stub.ListModels, pb.ListModelsRequest(), timeout)
        return [ModelInfo.from_pb(m) for m in response.models]

    def get_model(self, name: str = "", *, timeout: float | None = None) -> ModelInfo:
        """Describe one model ("" = the server's default model). Raises NotFoundError."""
        response = self._call(self._stub.GetModel, pb.GetModelRequest(model_name=name), timeout)
        return ModelInfo.from_pb(response.model)

    def _model_info(self, model: str, timeout: float | None) -> ModelInfo:
        """The model's description, asked once per client (input keys and action spec do not
        change; its parameter_version does, so do not read that from here)."""
        info = self._models.get(model)
        if info is None:
            info = self._models[model] = self.get_model(model, timeout=timeout)
        return info

    def compute_advantage(
        self,
        data: Any = None,
        *,
        reward: Any = None,
        done: Any = None,
        terminated: Any = None,
        observation: Any = None,
        next_observation: Any = None,
        state_value: Any = None,
        next_state_value: Any = None,
        action: Any = None,
        sample_log_prob: Any = None,
        log_prob: Any = None,
        model: str = "",
        estimator: Estimator = "gae",
        gamma: Any = None,
        lmbda: Any = None,
        average_gae: bool | None = None,
        average_adv: bool | None = None,
        average_rewards: bool | None = None,
        rho_thresh: float | None = None,
        c_thresh: float | None = None,
        rho_pg_thresh: float | None = None,
        form: Form = "full",
        in_keys: Sequence[str] | None = None,
        recompute_values: bool = False,
        timeout: float | None = None,
    ) -> AdvantageResult[Any] | TensorDictBase:
        """Compute advantages and value targets on the server.

        Pass either a TensorDict (positional ``data``) or arrays by keyword; numpy arrays give
        numpy results, torch tensors torch results (kind and device follow ``reward``).

        Arrays use the contract's layout: per-step tensors are [*B, T] (time last, no trailing
        feature dim); ``observation``/``next_observation`` are [*B, T, *obs], either one array (sent
        under the key ``in_keys[0]``, default ``"observation"``) or a ``{key: array}`` mapping.

        A TensorDict uses TorchRL's layout with batch_size [*B, T]: observations at the root and
        under ``"next"``, ``("next", "reward")``, ``("next", "done")``, ``("next", "terminated")``
        ([*B, T, 1]), ``"action"`` and ``"sample_log_prob"`` (or ``"action_log_prob"``; sent
        only for V-trace), optionally ``"state_value"`` and ``("next", "state_value")`` (sent when
        both are present, unless ``recompute_values``). Observation keys default to the model's
        input keys (one cached GetModel call). The result is a **new** TensorDict sharing the
        input's tensors, with ``"advantage"`` and ``"value_target"`` [*B, T, 1] added, plus
        ``"state_value"`` and ``("next", "state_value")`` when the server computed them; the
        caller's TensorDict is not modified.

        Args:
            data: a TensorDict in TorchRL's layout, or None to pass arrays by keyword.
            reward, done, terminated: [*B, T]; reward float32/float64, done/terminated bool.
            observation, next_observation: network inputs (see above).
            state_value, next_state_value: V(s_t), V(s_{t+1}) [*B, T]; both or neither. When
                given, the server does not run its value network.
            action, sample_log_prob, log_prob: for V-trace (see the proto's Trajectory).
            model: model name; "" = the server's default model.
            estimator: "gae" (default), "td0", "td1", "td_lambda" or "vtrace".
            gamma, lmbda: a float, or a per-step array [*B, T] (V-trace's lmbda: float only);
                None = the model's default.
            average_gae (gae), average_adv (vtrace), average_rewards (td0, td1, td_lambda):
                standardisation flags (see the proto). `KNOBS` lists what each estimator takes;
                any other non-None knob raises TypeError.
            rho_thresh, c_thresh, rho_pg_thresh: V-trace clipping thresholds.
            form: "full", or "compact" to send each observation once: full-form observations
                are converted by the client (about half the bytes); observations that already
                have T + 1 steps are sent as they are (then next_observation holds the truncated
                steps' next observations, [K, *obs]).
            in_keys: observation keys to read from a TensorDict (default: the model's inputs).
            recompute_values: ignore state values in the input and let the server compute them.
            timeout: deadline in seconds for this call (None = the client's default).

        Returns:
            `AdvantageResult` (numpy or torch fields, [*B, T]) for arrays; a TensorDict for a
            TensorDict. Numpy results are read-only views of the response bytes.

        Raises:
            TypeError, ValueError, KeyError: invalid arguments, before anything is sent (e.g. a
                knob the estimator does not take).
            AdvantageServiceError: the RPC failed; ``.code`` and ``.message`` say why.
        """
        knobs = {
            "gamma": gamma,
            "lmbda": lmbda,
            "average_gae": average_gae,
            "average_adv": average_adv,
            "average_rewards": average_rewards,
            "rho_thresh": rho_thresh,
            "c_thresh": c_thresh,
            "rho_pg_thresh": rho_pg_thresh,
        }
        check_knobs(estimator, knobs)
        if needs_input_keys(data, estimator, in_keys, recompute_values):
            in_keys = self._model_info(model, timeout).input_keys
        prepared = prepare(
            data,
            model=model,
            estimator=estimator,
            knobs=knobs,
            form=form,
            in_keys=in_keys,
            recompute_values=recompute_values,
            reward=reward,
            done=done,
            terminated=terminated,
            observation=observation,
            next_observation=next_observation,
            state_value=state_value,
            next_state_value=next_state_value,
            action=action,
            sample_log_prob=sample_log_prob,
            log_prob=log_prob,
        )
        response = self._call(self._stub.ComputeAdvantage, prepared.request, timeout)
        return decode_response(response, prepared.output)

    def compute_loss(
        self,
        data: Any = None,
        *,
        reward: Any = None,
        done: Any = None,
        terminated: Any = None,
        observation: Any = None,
        next_observation: Any = None,
        state_value: Any = None,
        next_state_value: Any = None,
        action: Any = None,
        sample_log_prob: Any = None,
        advantage: Any = None,
        value_target: Any = None,
        behaviour_distribution: Mapping[str, Any] | None = None,
        model: str = "",
        loss: Loss = "ppo_clip",
        entropy_bonus: bool | None = None,
        entropy_coeff: float | None = None,
        critic_coeff: float | None = None,
        loss_critic_type: str | None = None,
        normalize_advantage: bool | None = None,
        clip_value: float | None = None,
        clip_epsilon: float | tuple[float, float] | None = None,
        dtarg: float | None = None,
        beta: float | None = None,
        increment: float | None = None,
        decrement: float | None = None,
        gamma: float | None = None,
        lmbda: float | None = None,
        rho_thresh: float | None = None,
        c_thresh: float | None = None,
        rho_pg_thresh: float | None = None,
        estimator: Estimator | None = None,
        estimator_options: Mapping[str, Any] | None = None,
        apply_update: bool = False,
        expected_parameter_version: int | None = None,
        form: Form = "full",
        in_keys: Sequence[str] | None = None,
        recompute_advantage: bool = False,
        timeout: float | None = None,
    ) -> LossResult:
        """Compute a loss with the server's networks and, with ``apply_update``, take one step.

        Inputs are read like `compute_advantage`'s (arrays by keyword in the contract's layout,
        or a TensorDict in TorchRL's); the loss also needs ``action`` and, for the PPO family
        and IMPALA, ``sample_log_prob`` (the behaviour policy's log-probability). The server
        always scores actions with its own actor, so there is no ``log_prob`` argument.

        A TensorDict is read like `compute_advantage` reads it, plus: ``"action"``;
        ``"sample_log_prob"`` (or ``"action_log_prob"``); ``"advantage"`` and
        ``"value_target"`` when both are present (TorchRL's losses use them too; the estimator
        then does not run unless ``recompute_advantage``); ``"state_value"`` and
        ``("next", "state_value")`` when both are present (the old values of ``clip_value``);
        for ppo_kl, the behaviour policy's parameters under the actor's keys (``"logits"``, or
        ``"loc"`` and ``"scale"``), as TorchRL's KLPENPPOLoss reads them. Observations are
        always needed (the critic runs with gradients).

        Args:
            data: a TensorDict in TorchRL's layout, or None to pass arrays by keyword.
            reward, done, terminated, observation, next_observation, state_value,
                next_state_value, action, sample_log_prob: the trajectory, as for
                `compute_advantage`; ``state_value``/``next_state_value`` (both or neither) are
                only the old values of ``clip_value`` here.
            advantage, value_target: [*B, T], the reward's dtype; both or neither. When given,
                the estimator does not run.
            behaviour_distribution: ppo_kl only: ``{"logits": [*B, T, num_actions]}`` or
                ``{"loc": ..., "scale": ...}`` ([*B, T, *action_shape]) of the behaviour policy.
            model: model name; "" = the server's default model.
            loss: "ppo_clip" (default, TorchRL's ClipPPOLoss), "ppo_kl" (KLPENPPOLoss), "ppo"
                (PPOLoss), "a2c", "reinforce" or "impala" (DI-engine's vtrace_error).
            entropy_bonus, entropy_coeff, critic_coeff, loss_critic_type ("l1", "l2",
                "smooth_l1"), normalize_advantage, clip_value: the shared knobs (a2c: not
                normalize_advantage; reinforce: loss_critic_type and clip_value only; impala:
                entropy_bonus, entropy_coeff, critic_coeff).
            clip_epsilon: ppo_clip's ε, or a ``(low, high)`` pair for an asymmetric clip.
            dtarg, beta, increment, decrement: ppo_kl's (β is kept per model on the server and
                adapts only with ``apply_update``; ``beta`` only seeds it).
            gamma, lmbda, rho_thresh, c_thresh, rho_pg_thresh: impala's own V-trace knobs.
                `LOSS_KNOBS` lists what each loss takes; any other non-None knob raises
                TypeError. Unset knobs take TorchRL's defaults.
            estimator: the advantage estimator ("gae", "td0", "td1", "td_lambda", "vtrace");
                None = GAE, the server's default.
            estimator_options: the estimator's knobs, e.g. ``{"gamma": 0.99, "lmbda": 0.95}``
                (checked against `KNOBS`, as `compute_advantage`'s); unset = the model's
                defaults. Not for impala, which computes its own targets.
            apply_update: run backward and one optimizer step on the server's networks.
            expected_parameter_version: refuse (FailedPreconditionError) unless the model is at
                this version (compare-and-set for learners that must not step on stale data;
                the server checks it with or without ``apply_update``).
            form: "full" or "compact", as for `compute_advantage`.
            in_keys: observation keys to read from a TensorDict (default: the model's inputs).
            recompute_advantage: ignore the TensorDict's advantage and value_target.
            timeout: deadline in seconds for this call (None = the client's default).

        Returns:
            `LossResult`: the loss, its metrics, the parameter versions, whether it updated.

        Raises:
            TypeError, ValueError, KeyError: invalid arguments, before anything is sent.
            AdvantageServiceError: the RPC failed (e.g. FailedPreconditionError for a stale
                ``expected_parameter_version``).
        """
        knobs = {
            "entropy_bonus": entropy_bonus,
            "entropy_coeff": entropy_coeff,
            "critic_coeff": critic_coeff,
            "loss_critic_type": loss_critic_type,
            "normalize_advantage": normalize_advantage,
            "clip_value": clip_value,
            "clip_epsilon": clip_epsilon,
            "dtarg": dtarg,
            "beta": beta,
            "increment": increment,
            "decrement": decrement,
            "gamma": gamma,
            "lmbda": lmbda,
            "rho_thresh": rho_thresh,
            "c_thresh": c_thresh,
            "rho_pg_thresh": rho_pg_thresh,
        }
        check_loss_knobs(loss, knobs)
        distribution = None
        if needs_model_info(data, loss, in_keys, behaviour_distribution):
            info = self._model_info(model, timeout)
            in_keys = info.input_keys if in_keys is None else in_keys
            distribution = info.action.distribution
        prepared = prepare_loss(
            data,
            model=model,
            loss=loss,
            knobs=knobs,
            estimator=estimator,
            estimator_options=estimator_options,
            apply_update=apply_update,
            expected_parameter_version=expected_parameter_version,
            form=form,
            in_keys=in_keys,
            distribution=distribution,
            recompute_advantage=recompute_advantage,
            behaviour_distribution=behaviour_distribution,
            reward=reward,
            done=done,
            terminated=terminated,
            observation=observation,
            next_observation=next_observation,
            state_value=state_value,
            next_state_value=next_state_value,
            action=action,
            sample_log_prob=sample_log_prob,
            advantage=advantage,
            value_target=value_target,
        )
        response = self._call(self._stub.ComputeLoss, prepared.request, timeout)
        return decode_loss_response(response)

    def get_parameters(
        self,
        model: str = "",
        *,
        prefixes: Iterable[str] | str = (),
        as_: As = "numpy",
        device: Any = None,
        max_chunk_bytes: int = 0,
        timeout: float | None = None,
    ) -> Parameters:
        """Pull a model's parameters: ``version, tensors = client.get_parameters()``.

        Args:
            model: model name; "" = the server's default model.
            prefixes: only names starting with one of these (e.g. ``"actor_network."``).
            as_: "numpy" (writable arrays; bfloat16 widened to float32) or "torch" (tensors).
            device: torch only: where to put the tensors (default CPU).
            max_chunk_bytes: largest raw data per streamed chunk (0 = the server's default
                and maximum, 1 MiB); larger tensors arrive in flat pieces and are reassembled.
            timeout: deadline in seconds for the whole stream.

        Returns:
            `Parameters` ``(version, {name: array})``: names are "value_network.<key>" /
            "actor_network.<key>" (the networks' state_dict keys), all of one version.

        Raises:
            ValueError: a malformed stream (offsets, coverage, mixed versions).
            AdvantageServiceError: the RPC failed.
        """
        request = parameters_request(model, prefixes, max_chunk_bytes, as_)
        assembler = ParameterAssembler(as_, device)
        call = self._stub.GetParameters(
            request,
            timeout=self._timeout if timeout is None else timeout,
            metadata=self._metadata,
        )
        try:
            for chunk in call:
                assembler.add(chunk)
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from exc
        except BaseException:
            call.cancel()
            raise
        return assembler.result()

    def set_parameters(
        self,
        params: Mapping[str, Any],
        *,
        prefix: str = "",
        model: str = "",
        expected_version: int | None = None,
        max_chunk_bytes: int = MAX_CHUNK_BYTES,
        timeout: float | None = None,
    ) -> int:
        """Replace some or all of a model's parameters, all or nothing; returns the new version.

        Args:
            params: ``{name: array or tensor}``: full names ("actor_network.0.weight"), or a
                network's ``state_dict()`` with ``prefix="actor_network."``. A TensorDict
                (e.g. ``TensorDict.from_module(net)``) is read with "."-joined keys. Each
                tensor must have the parameter's shape and dtype (no conversion is made).
            prefix: prepended to every name.
            model: model name; "" = the server's default model.
            expected_version: refuse (FailedPreconditionError) unless the model is at this
                version (compare-and-set).
            max_chunk_bytes: largest raw data per streamed chunk (default 1 MiB); larger
                tensors are sent as flat pieces.
            timeout: deadline in seconds for the whole stream.

        Raises:
            TypeError, ValueError: invalid arguments, before anything is sent.
            InvalidArgumentError: a wrong name, shape or dtype anywhere (nothing is applied).
            FailedPreconditionError: the model is not at ``expected_version``.
        """
        stream = set_parameters_stream(
            params,
            prefix=prefix,
            model=model,
            expected_version=expected_version,
            max_chunk_bytes=max_chunk_bytes,
        )
        return self._call(self._stub.SetParameters, stream, timeout).parameter_version

    def load_into(
        self,
        module: torch.nn.Module,
        prefix: str = "actor_network.",
        *,
        model: str = "",
        strict: bool = True,
        timeout: float | None = None,
    ) -> int:
        """Pull the parameters under `prefix` into a local torch module; returns their version.

        ``client.load_into(actor)`` makes a local copy of the server's actor network act like
        it (``module.load_state_dict`` with the prefix stripped; tensors are copied onto the
        module's devices).
        """
        version, tensors = self.get_parameters(
            model, prefixes=(prefix,), as_="torch", timeout=timeout
        )
        module.load_state_dict(strip_prefix(tensors, prefix), strict=strict)
        return version
