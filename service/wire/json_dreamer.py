"""REST JSON ↔ a DreamerV3 ComputeLossRequest / ComputeLossResponse (POST /v1/loss).

Body (the tensors as nested lists; floats are sent in float32, flags as booleans):

    {"model_name": "dreamer-demo",
     "loss": {"name": "dreamer_v3", "actor": {"imagination": {"imagination_horizon": 15}},
              "value": {"value_loss": "two_hot"}, "model": {"kl_mode": "separate"}},
     "replay": {"observation": {"observation": [[[…]]]}, "action": […], "reward": […],
                "is_first": […], "terminated": […]},
     "starting_latents": {"state": […], "belief": […]},
     "imagined": {"state": …, "belief": …, "action": …, "reward": …, "continuation": …},
     "return_posterior": true, "apply_update": true, "expected_parameter_version": 3}

`loss` may also be just its name. The knobs are the proto messages' fields; enums by their
lower-case value ("two_hot", "separate", "l1"). The response is ComputeLoss's JSON with
`posterior_latents` as nested lists.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from google.protobuf import json_format

from service.errors import InvalidArgument
from service.losses.dreamer.registry import DREAMER_LOSSES
from service.models.model import Model
from service.pb.advantage.v1 import advantage_pb2 as pb
from service.wire.codec import encode_tensor
from service.wire.json import message_to_json, tensor_to_json

_ENUM_PREFIXES = {
    "value_loss": "DREAMER_VALUE_LOSS_",
    "kl_mode": "DREAMER_KL_MODE_",
    "reco_loss": "DREAMER_RECO_LOSS_",
}
_KEYS = {
    "model_name",
    "loss",
    "replay",
    "starting_latents",
    "imagined",
    "return_posterior",
    "apply_update",
    "expected_parameter_version",
    "min_parameter_version",
}


def dreamer_loss_name(body: Any) -> str | None:
    """The DreamerV3 loss a JSON body names, or None."""
    if not isinstance(body, Mapping):
        return None
    loss = body.get("loss")
    name = loss.get("name") if isinstance(loss, Mapping) else loss
    # Anything but a string (a list, an object) is not a DreamerV3 loss; the general decoder
    # refuses it with the field named.
    return name if isinstance(name, str) and name in DREAMER_LOSSES else None


def _enums(knobs: Any, where: str) -> Any:
    if not isinstance(knobs, Mapping):
        raise InvalidArgument(f"{where}: expected an object of knobs, got {type(knobs).__name__}")
    out: dict[str, Any] = {}
    for key, value in knobs.items():
        if isinstance(value, Mapping):
            out[key] = _enums(value, f"{where}.{key}")
        elif key in _ENUM_PREFIXES and isinstance(value, str):
            out[key] = _ENUM_PREFIXES[key] + value.upper()
        else:
            out[key] = value
    return out


def _tensor(value: Any, field: str, dtype: torch.dtype) -> pb.Tensor:
    try:
        tensor = torch.tensor(value, dtype=dtype)
    except (TypeError, ValueError, RuntimeError) as error:
        raise InvalidArgument(f"{field}: expected nested lists of numbers ({error})") from error
    return encode_tensor(tensor)


def _fill_map(target: Any, values: Any, field: str) -> None:
    if not isinstance(values, Mapping):
        raise InvalidArgument(f"{field}: expected an object of tensors")
    for key, value in values.items():
        target[key].CopyFrom(_tensor(value, f"{field}[{key!r}]", torch.float32))


def _action(value: Any, field: str) -> pb.Tensor:
    integral = torch.tensor(value).dtype in (torch.int64, torch.int32)
    return _tensor(value, field, torch.int64 if integral else torch.float32)


def dreamer_request_from_json(body: Any, model: Model) -> pb.ComputeLossRequest:
    """The ComputeLossRequest the body describes (see the module docstring)."""
    name = dreamer_loss_name(body)
    assert name is not None
    if unknown := sorted(set(body) - _KEYS):
        raise InvalidArgument(f"body: unknown keys {unknown}; expected some of {sorted(_KEYS)}")
    request = pb.ComputeLossRequest(model_name=str(body.get("model_name") or ""))
    loss = body["loss"]
    knobs = {k: v for k, v in loss.items() if k != "name"} if isinstance(loss, Mapping) else {}
    try:
        json_format.ParseDict(_enums(knobs, "loss"), getattr(request, name))
    except json_format.ParseError as error:
        raise InvalidArgument(f"loss: {error}") from error
    getattr(request, name).SetInParent()
    if "starting_latents" in body:
        _fill_map(request.starting_latents, body["starting_latents"], "starting_latents")
    if "replay" in body:
        replay = body["replay"]
        if not isinstance(replay, Mapping):
            raise InvalidArgument("replay: expected an object")
        observation = replay.get("observation")
        if not isinstance(observation, Mapping):
            observation = {"observation": observation}
        _fill_map(request.replay.observation, observation, "replay.observation")
        request.replay.action.CopyFrom(_action(replay.get("action"), "replay.action"))
        request.replay.reward.CopyFrom(
            _tensor(replay.get("reward"), "replay.reward", torch.float32)
        )
        request.replay.is_first.CopyFrom(
            _tensor(replay.get("is_first"), "replay.is_first", torch.bool)
        )
        if replay.get("terminated") is not None:
            flags = _tensor(replay["terminated"], "replay.terminated", torch.bool)
            request.replay.terminated.CopyFrom(flags)
    if "imagined" in body:
        imagined = body["imagined"]
        if not isinstance(imagined, Mapping):
            raise InvalidArgument("imagined: expected an object")
        latents = {k: imagined.get(k) for k in ("state", "belief")}
        _fill_map(request.imagined.latents, latents, "imagined.latents")
        request.imagined.action.CopyFrom(_action(imagined.get("action"), "imagined.action"))
        reward = _tensor(imagined.get("reward"), "imagined.reward", torch.float32)
        request.imagined.reward.CopyFrom(reward)
        if imagined.get("continuation") is not None:
            continuation = _tensor(imagined["continuation"], "imagined.continuation", torch.float32)
            request.imagined.continuation.CopyFrom(continuation)
    request.return_posterior = bool(body.get("return_posterior", False))
    request.apply_update = bool(body.get("apply_update", False))
    for key in ("expected_parameter_version", "min_parameter_version"):
        if body.get(key) is not None:
            if not isinstance(body[key], int) or isinstance(body[key], bool):
                raise InvalidArgument(f"{key}: expected an integer, got {body[key]!r}")
            setattr(request, key, body[key])
    del model  # the handler checks everything against the model
    return request


def dreamer_response_to_json(response: pb.ComputeLossResponse) -> dict[str, Any]:
    """ComputeLossResponse → JSON, with the posterior latents as nested lists."""
    latents = {k: tensor_to_json(v) for k, v in sorted(response.posterior_latents.items())}
    response_copy = pb.ComputeLossResponse()
    response_copy.CopyFrom(response)
    response_copy.ClearField("posterior_latents")
    result = message_to_json(response_copy)
    result["posterior_latents"] = latents
    return result
