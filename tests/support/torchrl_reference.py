"""TorchRL counterparts of the demo model and batches (the test oracle), and the SGD demo model
whose update reveals the gradient."""

from __future__ import annotations

import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule
from torch.distributions import Categorical
from torchrl.modules import ProbabilisticActor, ValueOperator
from torchrl.objectives import A2CLoss, ClipPPOLoss, KLPENPPOLoss, PPOLoss, ReinforceLoss

from service.models.demo import demo_manifest, demo_networks
from service.models.manifest import OptimizerSpec
from service.models.model import Model


def torchrl_modules() -> tuple[ValueOperator, ProbabilisticActor]:
    value_net, actor_net = demo_networks()
    value = ValueOperator(value_net, in_keys=["observation"])
    actor = ProbabilisticActor(
        TensorDictModule(actor_net, in_keys=["observation"], out_keys=["logits"]),
        in_keys=["logits"],
        distribution_class=Categorical,
        return_log_prob=True,
    )
    return value, actor


def as_tensordict(batch) -> TensorDict:
    steps = batch.reward.shape
    return TensorDict(
        {
            "observation": batch.observation,
            "action": batch.action,
            "sample_log_prob": batch.sample_log_prob,
            "next": {
                "observation": batch.next_observation,
                "reward": batch.reward.unsqueeze(-1),
                "done": batch.done.unsqueeze(-1),
                "terminated": batch.terminated.unsqueeze(-1),
            },
        },
        batch_size=steps,
    )


LR = 0.5


def sgd_model() -> Model:
    """The demo networks with plain SGD, so an update reveals the gradient: Δθ = −lr·∇θ."""
    value, actor = demo_networks()
    manifest = demo_manifest()
    manifest = type(manifest)(**{**manifest.__dict__, "optimizer": OptimizerSpec("sgd", lr=LR)})
    return Model(manifest, torch.device("cpu"), value_network=value, actor_network=actor)


def torchrl_loss(name: str):
    value, actor = torchrl_modules()
    kinds = {
        "ppo_clip": lambda: ClipPPOLoss(actor, value),
        "ppo": lambda: PPOLoss(actor, value),
        "a2c": lambda: A2CLoss(actor, value),
        "reinforce": lambda: ReinforceLoss(actor, value),
        "ppo_kl": lambda: KLPENPPOLoss(actor, value),
    }
    loss = kinds[name]()
    if name != "reinforce" and name != "a2c":
        loss.set_keys(sample_log_prob="sample_log_prob")
    return loss, value, actor
