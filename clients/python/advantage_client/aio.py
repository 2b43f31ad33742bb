"""Asyncio client (grpc.aio), the twin of `advantage_client.AdvantageClient`."""

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
from advantage_client.client import DEFAULT_MAX_MESSAGE_MB, channel_options
from advantage_client.errors import from_rpc_error
from advantage_client.types import AdvantageResult, LossResult, ModelInfo, Parameters

if TYPE_CHECKING:
    import torch
    from tensordict import TensorDictBase

    from advantage_client._loss import Loss
    from advantage_client._parameters import As
    from advantage_client._request import Estimator, Form

__all__ = ["AsyncAdvantageClient"]


class AsyncAdvantageClient:
    """Asyncio client of advantage-service; same arguments and methods as `AdvantageClient`,
    with coroutines.

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

    Use as an async context manager, or await `close()`. Failed calls raise
    `advantage_client.AdvantageServiceError` (a subclass per status code). Encoding and decoding
    run on the event loop (numpy copies; milliseconds per MB).
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
            self._channel = grpc.aio.insecure_channel(target, options=opts, compression=compression)
        else:
            self._channel = grpc.aio.secure_channel(
                target, credentials, options=opts, compression=compression
            )
        self._stub = pb_grpc.AdvantageServiceStub(self._channel)
        self._timeout = timeout
        # Sent with every call when the server requires a bearer token.
        self._metadata = (("authorization", f"Bearer {token}"),) if token else None
        self._models: dict[str, ModelInfo] = {}  # GetModel answers, for TensorDict inputs
        self.target = target

    # ---- lifecycle -----------------------------------------------------------------------------

    async def close(self, grace: float | None = None) -> None:
        """Close the channel; calls in flight get `grace` seconds, then are cancelled."""
        await self._channel.close(grace)

    async def __aenter__(self) -> AsyncAdvantageClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ---- RPCs ----------------------------------------------------------------------------------

    async def _call(self, method: Any, request: Any, timeout: float | None) -> Any:
        try:
            return await method(
                request,
                timeout=self._timeout if timeout is None else timeout,
                metadata=self._metadata,
            )
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from exc

    async def list_models(self, *, timeout: float | None = None) -> list[ModelInfo]:
        """Every model the server holds, sorted by name."""
        response = await self._call(self._stub.ListModels, pb.ListModelsRequest(), timeout)
        return [ModelInfo.from_pb(m) for m in response.models]

    async def get_model(self, name: str = "", *, timeout: float | None = None) -> ModelInfo:
        """Describe one model ("" = the server's default model). Raises NotFoundError."""
        request = pb.GetModelRequest(model_name=name)
        response = await self._call(self._stub.GetModel, request, timeout)
        return ModelInfo.from_pb(response.model)

    async def _model_info(self, model: str, timeout: float | None) -> ModelInfo:
        info = self._models.get(model)
        if info is None:
            info = self._models[model] = await self.get_model(model, timeout=timeout)
        return info

    async def compute_advantage(
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
        """Compute advantages and value targets; see `AdvantageClient.compute_advantage`."""
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
            in_keys = (await self._model_info(model, timeout)).input_keys
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
        response = await self._call(self._stub.ComputeAdvantage, prepared.request, timeout)
        return decode_response(response, prepared.output)

    async def compute_loss(
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
        """Compute a loss (and optionally update); see `AdvantageClient.compute_loss`."""
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
            info = await self._model_info(model, timeout)
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
        response = await self._call(self._stub.ComputeLoss, prepared.request, timeout)
        return decode_loss_response(response)

    async def get_parameters(
        self,
        model: str = "",
        *,
        prefixes: Iterable[str] | str = (),
        as_: As = "numpy",
        device: Any = None,
        max_chunk_bytes: int = 0,
        timeout: float | None = None,
    ) -> Parameters:
        """Pull a model's parameters; see `AdvantageClient.get_parameters`."""
        request = parameters_request(model, prefixes, max_chunk_bytes, as_)
        assembler = ParameterAssembler(as_, device)
        call = self._stub.GetParameters(
            request,
            timeout=self._timeout if timeout is None else timeout,
            metadata=self._metadata,
        )
        try:
            async for chunk in call:
                assembler.add(chunk)
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from exc
        except BaseException:
            call.cancel()
            raise
        return assembler.result()

    async def set_parameters(
        self,
        params: Mapping[str, Any],
        *,
        prefix: str = "",
        model: str = "",
        expected_version: int | None = None,
        max_chunk_bytes: int = MAX_CHUNK_BYTES,
        timeout: float | None = None,
    ) -> int:
        """Replace parameters, all or nothing; see `AdvantageClient.set_parameters`."""
        stream = set_parameters_stream(
            params,
            prefix=prefix,
            model=model,
            expected_version=expected_version,
            max_chunk_bytes=max_chunk_bytes,
        )
        response = await self._call(self._stub.SetParameters, stream, timeout)
        return response.parameter_version

    async def load_into(
        self,
        module: torch.nn.Module,
        prefix: str = "actor_network.",
        *,
        model: str = "",
        strict: bool = True,
        timeout: float | None = None,
    ) -> int:
        """Pull parameters into a local module; see `AdvantageClient.load_into`."""
        version, tensors = await self.get_parameters(
            model, prefixes=(prefix,), as_="torch", timeout=timeout
        )
        module.load_state_dict(strip_prefix(tensors, prefix), strict=strict)
        return version
