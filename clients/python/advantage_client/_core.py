"""What the sync and the asyncio client share: every public method, written once as steps.

A method here is a generator: it checks its arguments, builds the requests and decodes the
responses, and *yields* each RPC it needs (a `Unary` or `ServerStream` step) instead of making
it; the response is sent back into the generator. `AdvantageClient` performs the steps blocking,
`AsyncAdvantageClient` awaits them (their `_perform`); `client_method` turns a generator into
the public method of either. Nothing here does I/O.
"""

from __future__ import annotations

import functools
import inspect
import ipaddress
import json
from collections.abc import Callable, Coroutine, Generator, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from types import MethodType, ModuleType
from typing import (
    TYPE_CHECKING,
    Any,
    ClassVar,
    Concatenate,
    Generic,
    Literal,
    ParamSpec,
    Protocol,
    TypeVar,
    overload,
)

import grpc

from advantage_client._deprecated import advantage_keywords, loss_keywords
from advantage_client._loss import decode_loss_response, needs_model_info, prepare_loss
from advantage_client._parameters import (
    MAX_CHUNK_BYTES,
    ParameterAssembler,
    parameters_request,
    set_parameters_stream,
    strip_prefix,
)
from advantage_client._pb.advantage.v1 import advantage_pb2 as pb
from advantage_client._pb.advantage.v1 import advantage_pb2_grpc as pb_grpc
from advantage_client._request import decode_response, needs_input_keys, prepare
from advantage_client.dreamer import build_dreamer_request, decode_dreamer_response
from advantage_client.errors import from_rpc_error
from advantage_client.offpolicy import (
    OffPolicyLoss,
    OffPolicyResult,
    decode_offpolicy_response,
    prepare_offpolicy_loss,
)
from advantage_client.options import GAE, ClipPPO, EstimatorLike, LossLike
from advantage_client.types import AdvantageResult, LossResult, ModelInfo, Parameters

if TYPE_CHECKING:
    import torch
    from tensordict import TensorDictBase

    from advantage_client._parameters import As
    from advantage_client._request import Form

__all__ = [
    "DEFAULT_MAX_MESSAGE_MB",
    "DEFAULT_SERVICE_CONFIG",
    "ClientCore",
    "Finished",
    "ServerStream",
    "Step",
    "Steps",
    "Unary",
    "advance",
    "channel_options",
    "channel_target",
    "rpc_errors",
]

P = ParamSpec("P")
R = TypeVar("R")

#: Default cap on request and response sizes, in MiB (gRPC's own default is 4 MiB).
DEFAULT_MAX_MESSAGE_MB = 256.0

_DEFAULT_ESTIMATOR = GAE()
_DEFAULT_LOSS = ClipPPO()


_SERVICE = "advantage.v1.AdvantageService"
#: The gRPC service config the clients use unless told otherwise: round_robin over every address
#: of the target (a list of servers, or a dns:/// name that resolves to several), only to
#: servers whose gRPC health is SERVING (a replica still copying its learner's parameters gets
#: no calls), and up to 5 attempts of a call answered UNAVAILABLE (a server stopping or gone, a
#: replica without the `min_parameter_version` asked for), each on the next server. SetParameters
#: is never retried. A ComputeLoss with `apply_update` is retried like any call: give it
#: `expected_parameter_version` so that a retry of a step that was applied fails instead of
#: stepping twice.
DEFAULT_SERVICE_CONFIG: dict[str, Any] = {
    "loadBalancingConfig": [{"round_robin": {}}],
    "healthCheckConfig": {"serviceName": _SERVICE},
    "methodConfig": [
        {
            "name": [{"service": _SERVICE}],
            "retryPolicy": {
                "maxAttempts": 5,
                "initialBackoff": "0.05s",
                "maxBackoff": "1s",
                "backoffMultiplier": 2,
                "retryableStatusCodes": ["UNAVAILABLE"],
            },
        },
        {"name": [{"service": _SERVICE, "method": "SetParameters"}]},
    ],
}
#: Requests up to this size can be retried (gRPC keeps a copy of each until it is answered).
RETRY_BUFFER_BYTES = 16 << 20


def channel_target(target: str | Sequence[str]) -> str:
    """The gRPC target for `target`: a string as it is ("host:port", "dns:///name:port", …); a
    list of "ip:port" as one ``ipv4:///a:p,b:q`` (or ``ipv6:///[a]:p,…``) target, so that the
    channel balances over them (gRPC resolves no list of names: use a dns:/// name that resolves
    to every server instead)."""
    if isinstance(target, str):
        return target
    addresses = list(target)
    if not addresses or not all(isinstance(a, str) for a in addresses):
        raise ValueError(
            f"target: expected 'host:port' or a non-empty list of them, got {target!r}"
        )
    families = set()
    for address in addresses:
        host, colon, port = address.rpartition(":")
        bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
        try:
            ip = ipaddress.ip_address(bare)
        except ValueError:
            ip = None
        if not colon or not port.isdigit() or ip is None or (ip.version == 6) != (bare != host):
            raise ValueError(
                f"target: {address!r} in a list is not 'ip:port' ('[ipv6]:port'); a list holds "
                "IP addresses only, use a 'dns:///name:port' target for a name that resolves to "
                "every server"
            )
        families.add(ip.version)
    if len(families) > 1:
        raise ValueError(f"target: mixes IPv4 and IPv6 addresses {addresses}; use one family")
    return f"ipv{families.pop()}:///{','.join(addresses)}"


def channel_options(
    max_message_mb: float,
    options: Sequence[tuple[str, Any]],
    service_config: Mapping[str, Any] | None = None,
) -> list[tuple[str, Any]]:
    """Channel arguments: send/receive limits from `max_message_mb`, the `service_config`
    (load balancing and retries; None = gRPC's defaults: pick_first, no retries), then the
    caller's options (a ``grpc.service_config`` among them replaces `service_config`)."""
    if not max_message_mb > 0:
        raise ValueError(f"max_message_mb must be > 0, got {max_message_mb}")
    limit = min(int(max_message_mb * 1024 * 1024), 2**31 - 1)
    arguments: list[tuple[str, Any]] = [
        ("grpc.max_send_message_length", limit),
        ("grpc.max_receive_message_length", limit),
    ]
    own_config = any(name == "grpc.service_config" for name, _ in options)
    if service_config is not None and not own_config:
        arguments += [
            ("grpc.service_config", json.dumps(service_config)),
            ("grpc.enable_retries", 1),
            ("grpc.per_rpc_retry_buffer_size", min(RETRY_BUFFER_BYTES, limit)),
        ]
    return [*arguments, *options]


def _with_min_version(request: Any, version: int | None) -> Any:
    """Set `request.min_parameter_version` (None: leave it absent); TypeError/ValueError for a
    value that is not a version."""
    if version is None:
        return request
    if isinstance(version, bool) or not isinstance(version, int):
        raise TypeError(f"min_parameter_version must be an int, got {type(version).__name__}")
    if version < 0:
        raise ValueError(f"min_parameter_version must be >= 0, got {version}")
    request.min_parameter_version = version
    return request


# --------------------------------------------------------------------------------------------
# Steps
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Unary:
    """Call a unary (or client-streaming) RPC; its response is sent back into the steps."""

    method: str  # the stub's attribute, e.g. "ComputeAdvantage"
    request: Any  # a message, or an iterator of messages for a client stream
    timeout: float | None  # None = the client's default


@dataclass(frozen=True)
class ServerStream:
    """Call a server-streaming RPC and hand each message to `consume`; None is sent back.

    `restart`, for a read that may be redone from its start (GetParameters), forgets what
    `consume` took: gRPC retries a stream only until its first message arrives, so a server
    that goes away mid-stream (a replica stopped) is retried here, on the next server, as gRPC
    retries unary calls (`stream_attempts`)."""

    method: str
    request: Any
    timeout: float | None
    consume: Callable[[Any], None]
    restart: Callable[[], None] | None = None


def stream_attempts(service_config: Mapping[str, Any] | None) -> int:
    """How many times a restartable stream is tried: the service config's retry policy for
    UNAVAILABLE (its `maxAttempts`), else once."""
    for entry in (service_config or {}).get("methodConfig", []):
        policy = entry.get("retryPolicy") or {}
        names = entry.get("name", [])
        if "UNAVAILABLE" in policy.get("retryableStatusCodes", ()) and any(
            "method" not in name for name in names
        ):
            return max(1, int(policy.get("maxAttempts", 1)))
    return 1


def stream_backoff(attempt: int) -> float:
    """Seconds before retry `attempt` (1, 2, …) of a stream: the default policy's backoff."""
    return min(1.0, 0.05 * 2 ** (attempt - 1))


Step = Unary | ServerStream
Steps = Generator[Step, Any, R]


@dataclass(frozen=True)
class Finished(Generic[R]):
    """The steps returned: `value` is the method's result."""

    value: R


def advance(steps: Steps[R], reply: Any) -> Step | Finished[R]:
    """Send `reply` (the last step's result; None to start) into `steps`: the next step, or
    `Finished` with the result."""
    try:
        return steps.send(reply)
    except StopIteration as stop:
        return Finished(stop.value)


@contextmanager
def rpc_errors(cancel: Any = None) -> Iterator[None]:
    """Raise a failed RPC as `AdvantageServiceError`; on any other error, cancel the `cancel`
    call (a stream the caller stops reading) before letting the error through."""
    try:
        yield
    except grpc.RpcError as exc:
        raise from_rpc_error(exc) from exc
    except BaseException:
        if cancel is not None:
            cancel.cancel()
        raise


class _Blocking(Protocol):
    _awaits: ClassVar[Literal[False]]


class _Awaiting(Protocol):
    _awaits: ClassVar[Literal[True]]


class client_method(Generic[P, R]):
    """A public method of both clients, from the generator of its steps.

    On `AdvantageClient` it is a plain method that performs the steps blocking; on
    `AsyncAdvantageClient` (``_awaits = True``) a coroutine method that awaits them. Both keep
    the generator's name, docstring and signature (its return type without ``Steps[...]``).
    """

    def __init__(self, steps: Callable[Concatenate[Any, P], Steps[R]]) -> None:
        def blocking(client: Any, /, *args: Any, **kwargs: Any) -> R:
            return client._run(steps(client, *args, **kwargs))  # type: ignore[no-any-return]

        async def awaiting(client: Any, /, *args: Any, **kwargs: Any) -> R:
            return await client._run(steps(client, *args, **kwargs))  # type: ignore[no-any-return]

        signature = inspect.signature(steps)
        returns = signature.return_annotation
        if isinstance(returns, str) and returns.startswith("Steps[") and returns.endswith("]"):
            signature = signature.replace(return_annotation=returns[len("Steps[") : -1])
        self._methods: dict[bool, Callable[..., Any]] = {}
        for awaits, method in ((False, blocking), (True, awaiting)):
            functools.update_wrapper(method, steps)
            method.__signature__ = signature  # type: ignore[union-attr]
            self._methods[awaits] = method

    def __set_name__(self, owner: type, name: str) -> None:
        for method in self._methods.values():
            method.__name__ = name
            method.__qualname__ = f"{owner.__qualname__}.{name}"

    @overload
    def __get__(self, client: None, owner: type) -> Callable[..., Any]: ...
    @overload
    def __get__(
        self, client: _Awaiting, owner: type | None = None
    ) -> Callable[P, Coroutine[Any, Any, R]]: ...
    @overload
    def __get__(self, client: _Blocking, owner: type | None = None) -> Callable[P, R]: ...

    def __get__(self, client: Any, owner: type | None = None) -> Callable[..., Any]:
        cls = owner if owner is not None else type(client)
        method = self._methods[getattr(cls, "_awaits", False)]
        return method if client is None else MethodType(method, client)


# --------------------------------------------------------------------------------------------
# The methods
# --------------------------------------------------------------------------------------------


class ClientCore:
    """The channel, the defaults and the methods of `AdvantageClient` and
    `AsyncAdvantageClient`; subclasses choose grpc's channel module and perform the steps."""

    #: `grpc` or `grpc.aio`: where the channel comes from.
    _channels: ClassVar[ModuleType]
    #: Whether the public methods are coroutines.
    _awaits: ClassVar[bool]

    def __init__(
        self,
        target: str | Sequence[str],
        *,
        timeout: float | None = None,
        max_message_mb: float = DEFAULT_MAX_MESSAGE_MB,
        credentials: grpc.ChannelCredentials | None = None,
        options: Sequence[tuple[str, Any]] = (),
        compression: grpc.Compression | None = None,
        token: str | None = None,
        service_config: Mapping[str, Any] | None = DEFAULT_SERVICE_CONFIG,
    ) -> None:
        """Open a channel to `target` (no connection is made until the first call).

        Args:
            target: server address, e.g. ``"localhost:50051"``; a ``"dns:///name:port"`` name
                that resolves to several servers (e.g. a Kubernetes headless Service of
                replicas); or a list of ``"ip:port"`` (e.g. ``["10.0.0.7:50051",
                "10.0.0.8:50051"]``). Calls are balanced round-robin over the servers
                (`DEFAULT_SERVICE_CONFIG`).
            timeout: default deadline of every call, in seconds (None = no deadline); a call's
                own ``timeout`` argument takes precedence.
            max_message_mb: largest request or response this client sends or accepts, in MiB.
            credentials: TLS credentials (``grpc.ssl_channel_credentials(...)``); None =
                plaintext.
            options: extra gRPC channel arguments, appended after the size limits.
            compression: channel-wide compression (e.g. ``grpc.Compression.Gzip``).
            token: bearer token for a server started with an auth token (sent as the
                ``authorization`` metadata of every call).
            service_config: the gRPC service config (a JSON-like dict): by default round-robin
                over the target's servers, to SERVING ones only, with up to 5 attempts of a call
                answered UNAVAILABLE (`DEFAULT_SERVICE_CONFIG`); None = gRPC's defaults
                (pick_first, no retries).
        """
        opts = channel_options(max_message_mb, options, service_config)
        target = channel_target(target)
        if credentials is None:
            self._channel = self._channels.insecure_channel(
                target, options=opts, compression=compression
            )
        else:
            self._channel = self._channels.secure_channel(
                target, credentials, options=opts, compression=compression
            )
        self._stub = pb_grpc.AdvantageServiceStub(self._channel)
        self._timeout = timeout
        own_config = any(name == "grpc.service_config" for name, _ in options)
        self._stream_attempts = 1 if own_config else stream_attempts(service_config)
        # Sent with every call when the server requires a bearer token.
        self._metadata = (("authorization", f"Bearer {token}"),) if token else None
        self._models: dict[str, ModelInfo] = {}  # GetModel answers, for TensorDict inputs
        self.target = target

    def _invoke(self, step: Step) -> Any:
        """Start the step's RPC on the stub: the response (sync unary) or the call object."""
        timeout = self._timeout if step.timeout is None else step.timeout
        method = getattr(self._stub, step.method)
        return method(step.request, timeout=timeout, metadata=self._metadata)

    def _model_info(self, model: str, timeout: float | None) -> Steps[ModelInfo]:
        """The model's description, asked once per client (input keys and action spec do not
        change; its parameter_version does, so do not read that from here)."""
        info = self._models.get(model)
        if info is None:
            info = self._models[model] = yield from self._get_model(model, timeout=timeout)
        return info

    def _list_models(self, *, timeout: float | None = None) -> Steps[list[ModelInfo]]:
        """Every model the server holds, sorted by name."""
        response = yield Unary("ListModels", pb.ListModelsRequest(), timeout)
        return [ModelInfo.from_pb(m) for m in response.models]

    def _get_model(self, name: str = "", *, timeout: float | None = None) -> Steps[ModelInfo]:
        """Describe one model ("" = the server's default model). Raises NotFoundError."""
        response = yield Unary("GetModel", pb.GetModelRequest(model_name=name), timeout)
        return ModelInfo.from_pb(response.model)

    def _compute_advantage(
        self,
        batch: TensorDictBase | None = None,
        /,
        *,
        estimator: EstimatorLike | None = _DEFAULT_ESTIMATOR,
        model: str = "",
        form: Form = "auto",
        in_keys: Sequence[str] | None = None,
        recompute_values: bool = False,
        torchrl_shapes: bool = False,
        observation_dtype: str | None = None,
        min_parameter_version: int | None = None,
        timeout: float | None = None,
        n_agents: int = 0,
        agent_group: str | None = None,
        **arrays: Any,
    ) -> Steps[AdvantageResult[Any] | TensorDictBase]:
        """Compute advantages and value targets on the server.

        Pass the batch as a TensorDict (positional) or as arrays by keyword. Numpy arrays give
        numpy results, torch tensors torch results (kind and device follow ``reward``).

        Keyword arrays use the contract's layout, time last: per-step arrays are [*B, T] (or
        TorchRL's [*B, T, 1] with ``torchrl_shapes=True``); observations are [*B, T, *obs],
        one array (sent under ``in_keys[0]``, default ``"observation"``) or a
        ``{key: array}`` mapping:

        - ``reward`` (float32/float64), ``done``, ``terminated`` (bool; absent = done);
        - ``observation``, ``next_observation``: the networks' inputs before and after each
          step (see ``form`` for the compact layout);
        - ``state_value``, ``next_state_value``: V(s_t), V(s_{t+1}), both or neither; when
          given, the server does not run its value network;
        - ``action``, ``sample_log_prob``, ``log_prob``: for V-trace (see `VTrace`); for a
          composite policy ``action`` is a mapping head → array (``{"move": ..., "aim": ...}``)
          and the log-probabilities are aggregated arrays or mappings head → array;
        - ``mask``: [*B, T] bool, False at padded steps (TorchRL's ``("collector", "mask")``);
          padded steps get 0 and nothing flows from them into valid steps.

        With ``n_agents=n`` the per-agent arrays are TorchRL's MARL layout, time before agents:
        reward, values and log-probabilities [*B, T, n], observations [*B, T, n, *obs],
        actions [*B, T, n, ...], done/terminated [*B, T] (shared) or [*B, T, n]; results come
        back as [*B, T, n] (full form only). A TensorDict in TorchRL's MARL layout is read with
        ``agent_group="agents"`` (the group of its per-agent entries, batch [*B, T, n]):
        ``(group, key)`` and ``("next", group, key)`` observations, ``("next", group,
        "reward")``, ``("next", group, "done" | "terminated")`` or the shared ``("next",
        "done" | "terminated")``, optional ``(group, "state_value")`` and ``("next", group,
        "state_value")``; the result gets ``(group, "advantage")`` and ``(group,
        "value_target")`` [*B, T, n, 1].

        A TensorDict uses TorchRL's layout with batch_size [*B, T]: observations at the root
        and under ``"next"``, ``("next", "reward")``, ``("next", "done")``,
        ``("next", "terminated")`` ([*B, T, 1]), ``"action"`` and ``"sample_log_prob"`` (or
        ``"action_log_prob"``; sent only for V-trace), optionally ``"state_value"`` and
        ``("next", "state_value")`` (sent when both are present, unless
        ``recompute_values``). Observation keys default to the model's input keys (one cached
        GetModel call). The result is a **new** TensorDict sharing the input's tensors, with
        ``"advantage"`` and ``"value_target"`` [*B, T, 1] added, plus ``"state_value"`` and
        ``("next", "state_value")`` when the server computed them; the caller's TensorDict is
        not modified.

        Args:
            batch: a TensorDict in TorchRL's layout, or None to pass arrays by keyword.
            estimator: the estimator and its knobs, an option object: `GAE` (the default),
                `TD0`, `TD1`, `TDLambda` or `VTrace`, e.g. ``GAE(gamma=0.99, lmbda=0.95)``; or
                a name or ``torchrl.objectives.ValueEstimators`` member (every knob unset, see
                `estimator_from`); None = the server's default, GAE with the model's γ, λ.
            model: model name; "" = the server's default model.
            form: "auto" (the default) sends the compact form whenever the observations
                chain (next_observation[t] == observation[t + 1] wherever step t is not done),
                else the full form; the numbers are the same. "full" always sends both
                observation tensors; "compact" sends each observation once: full-form
                observations are converted by the client (about half the bytes; refused when
                they do not chain); observations that already have T + 1 steps are sent as they
                are (then next_observation holds the truncated steps' next observations,
                [K, *obs]).
            in_keys: observation keys to read from a TensorDict (default: the model's inputs).
            recompute_values: ignore state values in the input and let the server compute them.
            observation_dtype: "float16" or "bfloat16" sends float32/float64 observations
                rounded to that dtype (half or a quarter of their bytes); the server widens them
                exactly and computes in the model's dtype. The only error is this rounding:
                relative 2^-11 (float16) or 2^-8 (bfloat16) per element; see the README for
                the resulting bound on values and advantages. None (default) sends them as
                they are.
            torchrl_shapes: arrays only: every per-step array is TorchRL's [*B, T, 1], and the
                results are too. Without it a [*B, T, 1] reward is refused when an observation
                or another per-step array shows that the 1 is TorchRL's feature dimension.
            min_parameter_version: read-your-writes: compute with this parameter version or a
                later one (e.g. the ``new_parameter_version`` of your last update). A replica
                that does not hold it yet waits for it briefly, then answers UNAVAILABLE, which
                the client retries on the next server; the learner answers
                FailedPreconditionError for a version it has not reached.
            timeout: deadline in seconds for this call (None = the client's default).
            **arrays: the batch's arrays (above). Until the next release the previous knob
                keywords (``gamma=``, ``lmbda=``, …) still work, with a DeprecationWarning.

        Returns:
            `AdvantageResult` (numpy or torch fields, [*B, T]) for arrays; a TensorDict for a
            TensorDict. Numpy results are read-only views of the response bytes.

        Raises:
            TypeError, ValueError, KeyError: invalid arguments, before anything is sent.
            AdvantageServiceError: the RPC failed; ``.code`` and ``.message`` say why.
        """
        estimator = advantage_keywords(estimator, arrays)
        if needs_input_keys(batch, estimator, in_keys, recompute_values):
            in_keys = (yield from self._model_info(model, timeout)).input_keys
        prepared = prepare(
            batch,
            estimator=estimator,
            model=model,
            form=form,
            in_keys=in_keys,
            recompute_values=recompute_values,
            torchrl_shapes=torchrl_shapes,
            n_agents=n_agents,
            agent_group=agent_group,
            observation_dtype=observation_dtype,
            **arrays,
        )
        request = _with_min_version(prepared.request, min_parameter_version)
        response = yield Unary("ComputeAdvantage", request, timeout)
        return decode_response(response, prepared.output)

    def _compute_loss(
        self,
        batch: TensorDictBase | None = None,
        /,
        *,
        loss: LossLike = _DEFAULT_LOSS,
        estimator: EstimatorLike | None = None,
        apply_update: bool = False,
        expected_parameter_version: int | None = None,
        model: str = "",
        form: Form = "full",
        in_keys: Sequence[str] | None = None,
        recompute_advantage: bool = False,
        torchrl_shapes: bool = False,
        min_parameter_version: int | None = None,
        timeout: float | None = None,
        n_agents: int = 0,
        composite_lp_aggregate: bool | None = None,
        agent_group: str | None = None,
        **arrays: Any,
    ) -> Steps[LossResult]:
        """Compute a loss with the server's networks and, with ``apply_update``, take one step.

        The batch is passed like `compute_advantage`'s (a TensorDict, or arrays by keyword),
        plus ``action`` (always) and, for the PPO family and IMPALA, ``sample_log_prob`` (the
        behaviour policy's log-probability). Observations are always needed (the critic runs
        with gradients). The server scores actions with its own actor: there is no
        ``log_prob``. Further keyword arrays:

        - ``state_value``, ``next_state_value``: here only the old values of ``clip_value``;
        - ``advantage``, ``value_target``: [*B, T], the reward's dtype, both or neither; when
          given, the estimator does not run;
        - ``behaviour_distribution``: `KLPENPPO` only, the behaviour policy's
          ``{"logits": [*B, T, num_actions]}`` or ``{"loc": ..., "scale": ...}``.

        A TensorDict is read like `compute_advantage` reads it, plus ``"action"``,
        ``"sample_log_prob"`` (or ``"action_log_prob"``), ``"advantage"`` and
        ``"value_target"`` when both are present (as TorchRL's losses use them: the estimator
        then does not run unless ``recompute_advantage``), ``"state_value"`` and
        ``("next", "state_value")`` when both are present, and for `KLPENPPO` the behaviour
        policy's parameters under the actor's keys (``"logits"``, or ``"loc"`` and
        ``"scale"``), as TorchRL's KLPENPPOLoss reads them.

        Args:
            batch: a TensorDict in TorchRL's layout, or None to pass arrays by keyword.
            loss: the loss and its knobs, an option object: `ClipPPO` (the default), `KLPENPPO`,
                `PPO`, `A2C`, `Reinforce` or `Impala`, e.g. ``ClipPPO(clip_epsilon=0.1)``; or a
                name (every knob unset, see `loss_from`).
            estimator: the advantage's estimator, as for `compute_advantage` (e.g.
                ``GAE(gamma=0.99)``); None = the server's GAE with the model's γ, λ. Not for
                `Impala`, which computes its own targets.
            apply_update: run backward and one optimizer step on the server's networks.
            expected_parameter_version: refuse (FailedPreconditionError) unless the model is at
                this version (compare-and-set for learners that must not step on stale data;
                checked with or without ``apply_update``).
            model, form, in_keys, torchrl_shapes, min_parameter_version, timeout: as for
                `compute_advantage`.
            recompute_advantage: ignore the TensorDict's advantage and value_target.
            n_agents: arrays in the multi-agent layout (see `compute_advantage`).
            agent_group: a TensorDict in TorchRL's MARL layout: the per-agent entries' group
                (e.g. ``"agents"``), read as `compute_advantage` reads it, plus
                ``(group, "action")``, ``(group, "sample_log_prob")`` and, when both are
                present, ``(group, "advantage")`` and ``(group, "value_target")``.
            composite_lp_aggregate: composite policies: False reports each head's entropy
                (``composite_entropy.<head>_entropy``), as TorchRL's non-aggregate mode; None =
                decided by the log-probabilities sent (per head → non-aggregate). A TensorDict
                whose ``"action"`` holds TorchRL's nested heads sends them with dotted names
                (``"action.move"``), and its ``("action", "<head>_log_prob")`` entries per head.
            **arrays: the batch's arrays (above). Until the next release the previous knob
                keywords (``clip_epsilon=``, ``entropy_coeff=``, …, ``estimator_options=``)
                still work, with a DeprecationWarning.

        Returns:
            `LossResult`: the loss, its metrics, the parameter versions, whether it updated.

        Raises:
            TypeError, ValueError, KeyError: invalid arguments, before anything is sent.
            AdvantageServiceError: the RPC failed (e.g. FailedPreconditionError for a stale
                ``expected_parameter_version``).
        """
        loss, estimator = loss_keywords(loss, estimator, arrays)
        distribution = None
        if needs_model_info(batch, loss, in_keys, arrays.get("behaviour_distribution")):
            info = yield from self._model_info(model, timeout)
            in_keys = info.input_keys if in_keys is None else in_keys
            distribution = info.action.distribution
        prepared = prepare_loss(
            batch,
            loss=loss,
            estimator=estimator,
            apply_update=apply_update,
            expected_parameter_version=expected_parameter_version,
            model=model,
            form=form,
            in_keys=in_keys,
            distribution=distribution,
            recompute_advantage=recompute_advantage,
            torchrl_shapes=torchrl_shapes,
            n_agents=n_agents,
            composite_lp_aggregate=composite_lp_aggregate,
            agent_group=agent_group,
            **arrays,
        )
        request = _with_min_version(prepared.request, min_parameter_version)
        response = yield Unary("ComputeLoss", request, timeout)
        return decode_loss_response(response)

    def _compute_offpolicy_loss(
        self,
        *,
        loss: OffPolicyLoss,
        model: str = "",
        timeout: float | None = None,
        **batch: Any,
    ) -> Steps[OffPolicyResult]:
        """An off-policy loss (DQN, SAC, DiscreteSAC, DDPG, TD3) on [B] transitions, and with
        ``apply_update=True`` one step that also moves the server's target networks.

        Keyword args: ``observation``, ``next_observation`` (arrays [B, ...] or {key: array}),
        ``action``, ``reward``, ``done``, optional ``terminated``; ``apply_update``,
        ``expected_parameter_version``, ``return_td_error``, and ``tau`` or ``hard_interval``
        for this call's target rule (see `advantage_client.offpolicy`).
        """
        request = prepare_offpolicy_loss(loss=loss, model=model, **batch)
        response = yield Unary("ComputeLoss", request, timeout)
        return decode_offpolicy_response(response)

    def _get_parameters(
        self,
        model: str = "",
        *,
        prefixes: Iterable[str] | str = (),
        as_: As = "numpy",
        device: Any = None,
        max_chunk_bytes: int = 0,
        min_parameter_version: int | None = None,
        timeout: float | None = None,
    ) -> Steps[Parameters]:
        """Pull a model's parameters: ``version, tensors = client.get_parameters()``.

        Args:
            model: model name; "" = the server's default model.
            prefixes: only names starting with one of these (e.g. ``"actor_network."``).
            as_: "numpy" (writable arrays; bfloat16 widened to float32) or "torch" (tensors).
            device: torch only: where to put the tensors (default CPU).
            max_chunk_bytes: largest raw data per streamed chunk (0 = the server's default
                and maximum, 1 MiB); larger tensors arrive in flat pieces and are reassembled.
            min_parameter_version: this version or a later one (see `compute_advantage`).
            timeout: deadline in seconds for the whole stream.

        Returns:
            `Parameters` ``(version, {name: array})``: names are "value_network.<key>" /
            "actor_network.<key>" (the networks' state_dict keys), all of one version.

        Raises:
            ValueError: a malformed stream (offsets, coverage, mixed versions).
            AdvantageServiceError: the RPC failed.
        """
        request = parameters_request(model, prefixes, max_chunk_bytes, as_)
        request = _with_min_version(request, min_parameter_version)
        assemblers = [ParameterAssembler(as_, device)]
        yield ServerStream(
            "GetParameters",
            request,
            timeout,
            lambda chunk: assemblers[-1].add(chunk),
            restart=lambda: assemblers.append(ParameterAssembler(as_, device)),
        )
        return assemblers[-1].result()

    def _set_parameters(
        self,
        params: Mapping[str, Any],
        *,
        prefix: str = "",
        model: str = "",
        expected_version: int | None = None,
        max_chunk_bytes: int = MAX_CHUNK_BYTES,
        timeout: float | None = None,
    ) -> Steps[int]:
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
        response = yield Unary("SetParameters", stream, timeout)
        return response.parameter_version

    def _load_into(
        self,
        module: torch.nn.Module,
        prefix: str = "actor_network.",
        *,
        model: str = "",
        strict: bool = True,
        timeout: float | None = None,
    ) -> Steps[int]:
        """Pull the parameters under `prefix` into a local torch module; returns their version.

        ``client.load_into(actor)`` makes a local copy of the server's actor network act like
        it (``module.load_state_dict`` with the prefix stripped; tensors are copied onto the
        module's devices).
        """
        version, tensors = yield from self._get_parameters(
            model, prefixes=(prefix,), as_="torch", timeout=timeout
        )
        module.load_state_dict(strip_prefix(tensors, prefix), strict=strict)
        return version

    def _dreamer_loss(
        self,
        loss: Any,
        *,
        model: str = "",
        starting_latents: Any = None,
        replay: Any = None,
        imagined: Any = None,
        return_posterior: bool = False,
        apply_update: bool = False,
        expected_parameter_version: int | None = None,
        min_parameter_version: int | None = None,
        timeout: float | None = None,
    ) -> Steps[Any]:
        """A DreamerV3 loss (`advantage_client.dreamer`): `DreamerV3` (one learner step on a
        ``replay``), `DreamerV3Actor` / `DreamerV3Value` (from ``starting_latents`` or an
        ``imagined`` rollout) or `DreamerV3Model` (``replay``); returns a `DreamerResult`."""
        request = build_dreamer_request(
            loss,
            model=model,
            starting_latents=starting_latents,
            replay=replay,
            imagined=imagined,
            return_posterior=return_posterior,
            apply_update=apply_update,
            expected_parameter_version=expected_parameter_version,
        )
        request = _with_min_version(request, min_parameter_version)
        response = yield Unary("ComputeLoss", request, timeout)
        return decode_dreamer_response(response)

    list_models = client_method(_list_models)
    get_model = client_method(_get_model)
    compute_advantage = client_method(_compute_advantage)
    compute_loss = client_method(_compute_loss)
    compute_offpolicy_loss = client_method(_compute_offpolicy_loss)
    get_parameters = client_method(_get_parameters)
    set_parameters = client_method(_set_parameters)
    load_into = client_method(_load_into)
    dreamer_loss = client_method(_dreamer_loss)
