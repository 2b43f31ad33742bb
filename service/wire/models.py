"""Model descriptions on the wire (ListModels, GetModel)."""

from __future__ import annotations

from service.distributions import ACTION_DTYPES, DistributionKind
from service.dtypes import TORCH_DTYPES
from service.models.model import Model
from service.pb.advantage.v1 import advantage_pb2 as pb
from service.wire.codec import TORCH_TO_DTYPE


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
        kind = DistributionKind(manifest.action.distribution)
        info.action.CopyFrom(
            pb.ActionSpec(
                distribution=pb.Distribution.Value(f"DISTRIBUTION_{kind.name}"),
                shape=manifest.action.shape,
                dtype=TORCH_TO_DTYPE[TORCH_DTYPES[ACTION_DTYPES[kind]]],
                num_actions=manifest.action.num_actions,
            )
        )
    qvalue = manifest.qvalue_network
    if qvalue is not None:
        info.qvalue_network.CopyFrom(
            pb.QValueNetworkInfo(
                kind=qvalue.kind, ensemble_size=qvalue.ensemble_size, num_actions=qvalue.num_actions
            )
        )
        rule = manifest.target_update
        info.target_update.CopyFrom(
            pb.TargetUpdate(tau=rule.tau)
            if rule.rule == "soft"
            else pb.TargetUpdate(hard_interval=rule.interval)
        )
    return info


def list_models_response(models: list[Model]) -> pb.ListModelsResponse:
    """ListModels' answer."""
    return pb.ListModelsResponse(models=[model_info(model) for model in models])


def get_model_response(model: Model) -> pb.GetModelResponse:
    """GetModel's answer."""
    return pb.GetModelResponse(model=model_info(model))
