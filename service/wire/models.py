"""Model descriptions on the wire (ListModels, GetModel)."""

from __future__ import annotations

from service.distributions import ACTION_DTYPES, DistributionKind
from service.dtypes import TORCH_DTYPES
from service.models.manifest import ActionHeadSpec, ActionSpec
from service.models.model import Model
from service.pb.advantage.v1 import advantage_pb2 as pb
from service.wire.codec import TORCH_TO_DTYPE
from service.wire.dreamer import world_model_info


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
    if model.world_model is not None:
        info.world_model.CopyFrom(world_model_info(model))
    action = manifest.action
    if action is not None and action.distribution == "composite":
        info.action.CopyFrom(
            pb.ActionSpec(
                distribution=pb.DISTRIBUTION_COMPOSITE,
                heads=[
                    pb.ActionHead(name=head.name, **_distribution_fields(head))
                    for head in action.heads
                ],
            )
        )
    elif action is not None:
        info.action.CopyFrom(pb.ActionSpec(**_distribution_fields(action)))
    info.n_agents = manifest.agents
    info.agent_networks = manifest.agent_networks
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


def _distribution_fields(head: ActionSpec | ActionHeadSpec) -> dict:
    """The wire fields describing one head's (or a single-head actor's) distribution."""
    kind = DistributionKind(head.distribution)
    fields = {
        "distribution": pb.Distribution.Value(f"DISTRIBUTION_{kind.name}"),
        "shape": head.shape,
        "dtype": TORCH_TO_DTYPE[TORCH_DTYPES[ACTION_DTYPES[kind]]],
        "num_actions": head.num_actions,
    }
    if kind is DistributionKind.TANH_NORMAL:
        fields |= {"low": head.low, "high": head.high}
    return fields


def list_models_response(models: list[Model]) -> pb.ListModelsResponse:
    """ListModels' answer."""
    return pb.ListModelsResponse(models=[model_info(model) for model in models])


def get_model_response(model: Model) -> pb.GetModelResponse:
    """GetModel's answer."""
    return pb.GetModelResponse(model=model_info(model))
