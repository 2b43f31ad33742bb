"""Composite (two-head) and multi-agent models for the tests, float64, with their TorchRL
counterparts (`ProbabilisticTensorDictSequential` + `CompositeDistribution`): the oracle.

The same `nn.Module` objects back the server's model and TorchRL's modules, so both start from
identical parameters; the server's model uses plain SGD, so an update reveals the gradient
(Δθ = −lr·∇θ).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from tensordict import TensorDict
from tensordict.nn import (
    CompositeDistribution,
    ProbabilisticTensorDictModule,
    ProbabilisticTensorDictSequential,
    TensorDictModule,
)
from torch import nn
from torch.distributions import Categorical
from torchrl.modules import TanhNormal, ValueOperator

from service.models.manifest import (
    ActionHeadSpec,
    ActionSpec,
    InputSpec,
    Manifest,
    NetworkFile,
    OptimizerSpec,
)
from service.models.model import Model
from service.pb.advantage.v1 import advantage_pb2 as pb
from tests.support.wire import tensor

warnings.filterwarnings("ignore", message=".*composite_lp_aggregate.*")
warnings.filterwarnings("ignore", message=".*You are using a composite distribution.*")

F64 = torch.float64
OBS, MOVES, AIM = 4, 3, 2
LR = 0.25
HEADS = ("action.move", "action.aim")  # TorchRL's nested keys ("action", "move"), joined by dots


class TwoHeadActor(nn.Module):
    """obs [N, 4] → {"action.move": logits [N, 3], "action.aim": (loc [N, 2], scale [N, 2])}."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Linear(OBS, 16)
        self.logits = nn.Linear(16, MOVES)
        self.loc = nn.Linear(16, AIM)
        self.scale = nn.Linear(16, AIM)

    def parts(self, observation: torch.Tensor) -> tuple[torch.Tensor, ...]:
        hidden = torch.tanh(self.body(observation))
        scale = nn.functional.softplus(self.scale(hidden)) + 0.05
        return self.logits(hidden), self.loc(hidden), scale

    def forward(self, observation: torch.Tensor) -> dict[str, object]:
        logits, loc, scale = self.parts(observation)
        return {"action.move": logits, "action.aim": (loc, scale)}


class _Flat(nn.Module):
    """TorchRL's view of the same actor: a flat tuple for a TensorDictModule."""

    def __init__(self, actor: TwoHeadActor) -> None:
        super().__init__()
        self.actor = actor

    def forward(self, observation: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.actor.parts(observation)


def networks(seed: int = 0) -> tuple[nn.Module, TwoHeadActor]:
    """Seeded float64 (value, actor)."""
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        value = nn.Sequential(nn.Linear(OBS, 16), nn.Tanh(), nn.Linear(16, 1)).to(F64)
        actor = TwoHeadActor().to(F64)
    finally:
        torch.random.set_rng_state(state)
    return value, actor


def manifest(
    name: str = "two_heads", agents: int = 0, optimizer: OptimizerSpec | None = None
) -> Manifest:
    return Manifest(
        name=name,
        inputs=(InputSpec(name="observation", shape=(OBS,), dtype="float64"),),
        value_network=NetworkFile(file="<test>"),
        actor_network=NetworkFile(file="<test>"),
        action=ActionSpec(
            distribution="composite",
            heads=(
                ActionHeadSpec(name="action.move", distribution="categorical", num_actions=MOVES),
                ActionHeadSpec(name="action.aim", distribution="tanh_normal", shape=(AIM,)),
            ),
        ),
        agents=agents,
        optimizer=optimizer or OptimizerSpec("sgd", lr=LR),
    )


def model(
    seed: int = 0, name: str = "two_heads", agents: int = 0, optimizer: OptimizerSpec | None = None
) -> Model:
    """The server's model over `networks(seed)` (the very same modules)."""
    value, actor = networks(seed)
    return Model(
        manifest(name, agents, optimizer),
        torch.device("cpu"),
        value_network=value,
        actor_network=actor,
    )


def torchrl_modules(value: nn.Module, actor: TwoHeadActor):
    """TorchRL's critic and composite actor over the same modules."""
    params = TensorDictModule(
        _Flat(actor),
        in_keys=["observation"],
        out_keys=[
            ("params", "action", "move", "logits"),
            ("params", "action", "aim", "loc"),
            ("params", "action", "aim", "scale"),
        ],
    )
    head = ProbabilisticTensorDictModule(
        in_keys=["params"],
        out_keys=[("action", "move"), ("action", "aim")],
        distribution_class=CompositeDistribution,
        distribution_kwargs={
            "distribution_map": {("action", "move"): Categorical, ("action", "aim"): TanhNormal}
        },
        return_log_prob=True,
    )
    policy = ProbabilisticTensorDictSequential(params, head)
    critic = ValueOperator(value, in_keys=["observation"])
    return critic, policy


@dataclass
class Data:
    """A [*B, T] batch for the two-head model."""

    observation: torch.Tensor  # [*B, T, 4]
    next_observation: torch.Tensor
    reward: torch.Tensor
    done: torch.Tensor
    terminated: torch.Tensor
    move: torch.Tensor  # [*B, T] int64
    aim: torch.Tensor  # [*B, T, 2] in (-1, 1)
    move_log_prob: torch.Tensor  # behaviour log-probs per head
    aim_log_prob: torch.Tensor

    @property
    def sample_log_prob(self) -> torch.Tensor:
        return self.move_log_prob + self.aim_log_prob


def make_data(batch: tuple[int, ...], steps: int, seed: int) -> Data:
    """Random chained episodes with random actions and behaviour log-probabilities."""
    g = torch.Generator().manual_seed(seed)
    shape = (*batch, steps)
    chain = torch.randn(*batch, steps + 1, OBS, generator=g, dtype=F64)
    observation, next_observation = chain[..., :-1, :], chain[..., 1:, :].clone()
    done = torch.rand(shape, generator=g) < 0.15
    terminated = done & (torch.rand(shape, generator=g) < 0.5)
    next_observation[done] = torch.randn(int(done.sum()), OBS, generator=g, dtype=F64)
    return Data(
        observation=observation.contiguous(),
        next_observation=next_observation,
        reward=torch.randn(shape, generator=g, dtype=F64),
        done=done,
        terminated=terminated,
        move=torch.randint(0, MOVES, shape, generator=g),
        aim=torch.rand(*shape, AIM, generator=g, dtype=F64) * 1.8 - 0.9,
        move_log_prob=-torch.rand(shape, generator=g, dtype=F64) * 1.5 - 0.2,
        aim_log_prob=torch.randn(shape, generator=g, dtype=F64) * 0.3,
    )


def trajectory(data: Data, *, per_head: bool, **extra: torch.Tensor) -> pb.Trajectory:
    """The full-form wire trajectory: actions per head; behaviour log-probabilities per head
    (`per_head`, TorchRL's non-aggregate mode) or summed."""
    message = pb.Trajectory(
        reward=tensor(data.reward),
        done=tensor(data.done),
        terminated=tensor(data.terminated),
        form=pb.TRAJECTORY_FORM_FULL,
        **{key: tensor(value) for key, value in extra.items()},
    )
    message.observation["observation"].CopyFrom(tensor(data.observation))
    message.next_observation["observation"].CopyFrom(tensor(data.next_observation))
    message.action_heads["action.move"].CopyFrom(tensor(data.move))
    message.action_heads["action.aim"].CopyFrom(tensor(data.aim))
    if per_head:
        message.sample_log_prob_heads["action.move"].CopyFrom(tensor(data.move_log_prob))
        message.sample_log_prob_heads["action.aim"].CopyFrom(tensor(data.aim_log_prob))
    else:
        message.sample_log_prob.CopyFrom(tensor(data.sample_log_prob))
    return message


def tensordict(data: Data, *, per_head: bool) -> TensorDict:
    """TorchRL's tensordict of the same batch (actions under ("action", head))."""
    steps = data.reward.shape
    content: dict = {
        "observation": data.observation,
        "action": {"move": data.move, "aim": data.aim},
        "next": {
            "observation": data.next_observation,
            "reward": data.reward.unsqueeze(-1),
            "done": data.done.unsqueeze(-1),
            "terminated": data.terminated.unsqueeze(-1),
        },
    }
    if per_head:
        content["action"] |= {
            "move_log_prob": data.move_log_prob,
            "aim_log_prob": data.aim_log_prob,
        }
    else:
        content["sample_log_prob"] = data.sample_log_prob
    return TensorDict(content, batch_size=steps)


def parameters_of(value: nn.Module, actor: nn.Module) -> dict[str, torch.Tensor]:
    """Detached copies of the parameters, keyed as GetParameters names them."""
    named = {f"value.{k}": v for k, v in value.named_parameters()}
    named |= {f"actor.{k}": v for k, v in actor.named_parameters()}
    return {key: tensor.detach().clone() for key, tensor in named.items()}


def snapshot(model: Model) -> list[torch.Tensor]:
    """Copies of a model's parameters (value network's, then the actor's)."""
    assert model.value_network is not None and model.actor_network is not None
    networks = (*model.value_network.parameters(), *model.actor_network.parameters())
    return [parameter.detach().clone() for parameter in networks]


PER_HEAD_LOG_PROBS = [("action", "move_log_prob"), ("action", "aim_log_prob")]
