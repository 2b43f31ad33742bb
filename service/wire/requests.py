"""Request messages that the REST surface builds for the shared handlers without a JSON body,
and the fields several requests share."""

from __future__ import annotations

from typing import Any

from service.pb.advantage.v1 import advantage_pb2 as pb


def list_models_request() -> pb.ListModelsRequest:
    """ListModels' (empty) request."""
    return pb.ListModelsRequest()


def get_model_request(name: str) -> pb.GetModelRequest:
    """GetModel's request for model `name`."""
    return pb.GetModelRequest(model_name=name)


def min_version(request: Any) -> int | None:
    """A request's `min_parameter_version` (ComputeAdvantage, ComputeLoss, GetParameters); None
    when absent."""
    return request.min_parameter_version if request.HasField("min_parameter_version") else None
