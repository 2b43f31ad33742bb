"""Request messages that the REST surface builds for the shared handlers without a JSON body."""

from __future__ import annotations

from service.pb.advantage.v1 import advantage_pb2 as pb


def list_models_request() -> pb.ListModelsRequest:
    """ListModels' (empty) request."""
    return pb.ListModelsRequest()


def get_model_request(name: str) -> pb.GetModelRequest:
    """GetModel's request for model `name`."""
    return pb.GetModelRequest(model_name=name)
