"""Request handlers shared by the gRPC servicer and the REST surface: protobuf in, protobuf out.

They run in a worker thread and raise `service.errors.ServiceError`s; the transports map those.
"""

from __future__ import annotations

import time

import torch

from service.codec import (
    TORCH_TO_DTYPE,
    decode_per_step,
    decode_tensor,
    decode_trajectory,
    encode_tensor,
)
from service.compute import compute_advantage
from service.estimator_spec import decode_estimator
from service.learning import LossInputs, compute_loss
from service.loss_spec import decode_loss
from service.models.model import TORCH_DTYPES, Model
from service.models.registry import ModelRegistry
from service.parameters import parameter_chunks, set_parameters
from service.pb.advantage.v1 import advantage_pb2 as pb

_DISTRIBUTIONS = {
    "categorical": pb.DISTRIBUTION_CATEGORICAL,
    "normal": pb.DISTRIBUTION_NORMAL,
    "tanh_normal": pb.DISTRIBUTION_TANH_NORMAL,
}


def model_info(model: Model) -> pb.ModelInfo:
    """Describe a model for ListModels / GetModel."""
    manifest = model.manifest
    info = pb.ModelInfo(
        name=model.name,
        inputs=[
            pb.TensorSpec(name=s.name, shape=s.shape, dtype=TORCH_TO_DTYPE[TORCH_DTYPES[s.dtype]])
            for s in manifest.inputs
        ],
        has_value_network=model.value_network is not None,
        has_actor_network=model.actor_network is not None,
        parameter_version=model.parameter_version,
        defaults=pb.EstimatorDefaults(gamma=manifest.defaults.gamma, lmbda=manifest.defaults.lmbda),
        device=str(model.device),
        parameter_dtype=TORCH_TO_DTYPE[model.parameter_dtype],
    )
    if manifest.action is not None:
        categorical = manifest.action.distribution == "categorical"
        info.action.CopyFrom(
            pb.ActionSpec(
                distribution=_DISTRIBUTIONS[manifest.action.distribution],
                shape=manifest.action.shape,
                dtype=pb.DTYPE_INT64 if categorical else pb.DTYPE_FLOAT32,
                num_actions=manifest.action.num_actions,
            )
        )
    return info


def list_models(registry: ModelRegistry) -> pb.ListModelsResponse:
    """ListModels."""
    return pb.ListModelsResponse(models=[model_info(model) for model in registry])


def get_model(registry: ModelRegistry, request: pb.GetModelRequest) -> pb.GetModelResponse:
    """GetModel."""
    return pb.GetModelResponse(model=model_info(registry.get(request.model_name)))


def compute_advantage_handler(
    registry: ModelRegistry, request: pb.ComputeAdvantageRequest
) -> pb.ComputeAdvantageResponse:
    """ComputeAdvantage: decode, run the networks and the estimator, encode."""
    start = time.perf_counter()
    model = registry.get(request.model_name)
    trajectory = decode_trajectory(request.trajectory)
    spec = decode_estimator(
        request, model.manifest.defaults, trajectory.batch_shape, trajectory.dtype
    )
    decoded = time.perf_counter()
    result = compute_advantage(model, trajectory, spec)
    encoding = time.perf_counter()
    response = pb.ComputeAdvantageResponse(
        advantage=encode_tensor(result.advantage),
        value_target=encode_tensor(result.value_target),
        model_name=model.name,
        parameter_version=result.parameter_version,
    )
    if result.state_value is not None and result.next_state_value is not None:
        response.state_value.CopyFrom(encode_tensor(result.state_value))
        response.next_state_value.CopyFrom(encode_tensor(result.next_state_value))
    response.timing.CopyFrom(
        pb.Timing(
            decode_ms=(decoded - start) * 1e3,
            network_ms=result.network_ms,
            estimator_ms=result.estimator_ms,
            encode_ms=(time.perf_counter() - encoding) * 1e3,
        )
    )
    return response


def _optional_per_step(
    message: pb.ComputeLossRequest, name: str, steps: tuple[int, ...], dtype: torch.dtype
) -> torch.Tensor | None:
    if not message.HasField(name):
        return None
    return decode_per_step(getattr(message, name), name, steps, dtype)


def compute_loss_handler(
    registry: ModelRegistry, request: pb.ComputeLossRequest
) -> pb.ComputeLossResponse:
    """ComputeLoss: decode, evaluate the loss (and update), encode."""
    start = time.perf_counter()
    model = registry.get(request.model_name)
    trajectory = decode_trajectory(request.trajectory)
    steps, dtype = trajectory.batch_shape, trajectory.dtype
    inputs = LossInputs(
        estimator=decode_estimator(request, model.manifest.defaults, steps, dtype),
        loss=decode_loss(request, model.manifest.defaults),
        advantage=_optional_per_step(request, "advantage", steps, dtype),
        value_target=_optional_per_step(request, "value_target", steps, dtype),
        behaviour_params={
            key: decode_tensor(
                request.behaviour_distribution[key], f"behaviour_distribution[{key!r}]"
            )
            for key in sorted(request.behaviour_distribution)
        },
        apply_update=request.apply_update,
        expected_version=(
            request.expected_parameter_version
            if request.HasField("expected_parameter_version")
            else None
        ),
    )
    decoded = time.perf_counter()
    result = compute_loss(model, trajectory, inputs)
    return pb.ComputeLossResponse(
        loss=result.loss,
        metrics=result.metrics,
        model_name=model.name,
        parameter_version=result.parameter_version,
        updated=result.updated,
        new_parameter_version=result.new_parameter_version,
        grad_norm=result.grad_norm,
        timing=pb.Timing(
            decode_ms=(decoded - start) * 1e3,
            network_ms=result.network_ms,
            estimator_ms=result.estimator_ms,
        ),
    )


def get_parameters(
    registry: ModelRegistry, request: pb.GetParametersRequest
) -> list[pb.ParameterChunk]:
    """GetParameters: the whole stream, snapshot under the model's lock."""
    model = registry.get(request.model_name)
    return list(parameter_chunks(model, request.max_chunk_bytes, request.prefixes))


def set_parameters_handler(
    registry: ModelRegistry, chunks: list[pb.ParameterChunk]
) -> pb.SetParametersResponse:
    """SetParameters: all or nothing."""
    return set_parameters(registry.get, chunks)
