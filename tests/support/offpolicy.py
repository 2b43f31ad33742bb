"""Off-policy test helpers: float64 copies of the off-policy demo models, replay batches, the
wire request, and TorchRL 0.14.1 loss modules built on the same networks (the oracle)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, replace

import grpc
import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule
from torch import nn
from torchrl.data import Bounded
from torchrl.modules import ProbabilisticActor, TanhNormal, ValueOperator
from torchrl.objectives import SACLoss, ValueEstimators

from service.models.manifest import InputSpec
from service.models.model import Model
from service.models.targets import attach_offpolicy
from service.pb.advantage.v1 import advantage_pb2 as pb
from service.pb.advantage.v1 import advantage_pb2_grpc as rpc
from service.wire.codec import decode_tensor, encode_tensor

F64 = torch.float64


def as_float64(model: Model) -> Model:
    """The same networks in float64 (inputs declared float64), with fresh targets."""
    manifest = replace(
        model.manifest,
        inputs=tuple(InputSpec(s.name, s.shape, "float64") for s in model.manifest.inputs),
    )
    networks = {
        key: copy.deepcopy(getattr(model, key)).double()
        for key in ("value_network", "actor_network", "qvalue_network")
        if getattr(model, key) is not None
    }
    return attach_offpolicy(Model(manifest, model.device, **networks))


@dataclass
class Batch:
    """[B] transitions in float64 (observations [B, obs])."""

    observation: torch.Tensor
    next_observation: torch.Tensor
    action: torch.Tensor
    reward: torch.Tensor
    done: torch.Tensor
    terminated: torch.Tensor

    def trajectory(self) -> pb.Trajectory:
        return pb.Trajectory(
            observation={"observation": encode_tensor(self.observation)},
            next_observation={"observation": encode_tensor(self.next_observation)},
            action=encode_tensor(self.action),
            reward=encode_tensor(self.reward),
            done=encode_tensor(self.done),
            terminated=encode_tensor(self.terminated),
        )

    def tensordict(self, action: torch.Tensor | None = None) -> TensorDict:
        rows = self.reward.shape[0]
        return TensorDict(
            {
                "observation": self.observation,
                "action": self.action if action is None else action,
                "next": {
                    "observation": self.next_observation,
                    "reward": self.reward.unsqueeze(-1),
                    "done": self.done.unsqueeze(-1),
                    "terminated": self.terminated.unsqueeze(-1),
                },
            },
            [rows],
        )


def make_batch(
    rows: int, observation_size: int, action: Callable[[torch.Generator], torch.Tensor], seed: int
) -> Batch:
    """Random transitions; a quarter terminated, another quarter truncated (done only)."""
    g = torch.Generator().manual_seed(seed)
    kind = torch.arange(rows) % 4
    return Batch(
        observation=torch.randn(rows, observation_size, generator=g, dtype=F64),
        next_observation=torch.randn(rows, observation_size, generator=g, dtype=F64),
        action=action(g),
        reward=torch.randn(rows, generator=g, dtype=F64),
        done=(kind == 1) | (kind == 2),
        terminated=kind == 1,
    )


def perturb(network: nn.Module, seed: int) -> None:
    """Shift every parameter of `network` by seeded noise (targets that differ from the online
    networks, so that using the wrong one shows)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=g, dtype=parameter.dtype))


def stub(port: int) -> rpc.AdvantageServiceStub:
    return rpc.AdvantageServiceStub(grpc.insecure_channel(f"127.0.0.1:{port}"))


def parameters(port: int, model_name: str) -> dict[str, torch.Tensor]:
    """GetParameters as {name: tensor} (pieces joined)."""
    pieces: dict[str, list] = {}
    shapes: dict[str, list[int]] = {}
    for chunk in stub(port).GetParameters(pb.GetParametersRequest(model_name=model_name)):
        for named in chunk.tensors:
            pieces.setdefault(named.name, []).append(decode_tensor(named.data, named.name).clone())
            shapes[named.name] = list(named.shape)
    return {name: torch.cat(parts).view(shapes[name]) for name, parts in pieces.items()}


def td_error(response: pb.ComputeLossResponse) -> torch.Tensor:
    return decode_tensor(response.td_error, "td_error").clone()


def strip(prefix: str, flat: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Flattened TensorDict keys without TorchRL's module-wrapper prefix."""
    return {key.removeprefix(prefix): value for key, value in flat.items()}


def module_params(loss_params, prefix: str) -> dict[str, torch.Tensor]:
    return strip(prefix, dict(loss_params.flatten_keys(".").items()))


def stacked_members(ensemble: nn.Module) -> dict[str, torch.Tensor]:
    """A QValueEnsemble's members' parameters stacked on a leading ensemble dimension."""
    states = [member.state_dict() for member in ensemble.members]
    return {key: torch.stack([s[key] for s in states]) for key in states[0]}


def tdmodule(network: nn.Module, in_keys: list[str], out_keys: list[str]) -> TensorDictModule:
    return TensorDictModule(network, in_keys=in_keys, out_keys=out_keys)


#: SACLoss's outputs besides `loss`.
SAC_TERMS = ("loss_actor", "loss_qvalue", "loss_alpha", "alpha", "entropy")


def sac_oracle(model, gamma: float = 0.99, **options) -> SACLoss:
    """TorchRL's SACLoss on copies of `model`'s actor and Q ensemble (targets: the model's)."""
    actor = ProbabilisticActor(
        tdmodule(copy.deepcopy(model.actor_network), ["observation"], ["loc", "scale"]),
        in_keys=["loc", "scale"],
        distribution_class=TanhNormal,
        spec=Bounded(-1.0, 1.0, (1,), dtype=F64),
    )
    member = copy.deepcopy(model.qvalue_network.members[0])
    qvalue = ValueOperator(member, in_keys=["observation", "action"])
    loss = SACLoss(actor, qvalue, num_qvalue_nets=2, **options)
    loss.make_value_estimator(ValueEstimators.TD0, gamma=torch.tensor(gamma, dtype=F64))
    stacked = stacked_members(model.qvalue_network)
    for params in (loss.qvalue_network_params, loss.target_qvalue_network_params):
        for key, value in params.flatten_keys(".").items():
            value.data.copy_(stacked[key.split("module.")[-1]])
    return loss
