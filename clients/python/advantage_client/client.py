"""Synchronous client (a grpc channel)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import grpc

from advantage_client._pb.advantage.v1 import advantage_pb2 as pb
from advantage_client._pb.advantage.v1 import advantage_pb2_grpc as pb_grpc
from advantage_client._request import check_knobs, decode_response, needs_input_keys, prepare
from advantage_client.errors import from_rpc_error
from advantage_client.types import AdvantageResult, ModelInfo

if TYPE_CHECKING:
    from tensordict import TensorDictBase

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
        self._input_keys: dict[str, tuple[str, ...]] = {}
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
            return method(request, timeout=self._timeout if timeout is None else timeout)
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

    def _model_input_keys(self, model: str, timeout: float | None) -> tuple[str, ...]:
        keys = self._input_keys.get(model)
        if keys is None:
            keys = self.get_model(model, timeout=timeout).input_keys
            self._input_keys[model] = keys
        return keys

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
            in_keys = self._model_input_keys(model, timeout)
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
