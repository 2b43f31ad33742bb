"""ddpg and td3 over the wire against TorchRL 0.14.1's DDPGLoss / TD3Loss on the same float64
networks (the deterministic policy is the tanh-normal actor's squashed location) and the same
smoothing noise; then applied updates with TD3's delayed actor and SoftUpdate."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torchrl.data import Bounded
from torchrl.modules import Actor, ValueOperator
from torchrl.objectives import DDPGLoss, SoftUpdate, TD3Loss, ValueEstimators

from service.models.demo_offpolicy import demo_ddpg_model, demo_sac_model
from service.pb.advantage.v1 import advantage_pb2 as pb
from tests.support.offpolicy import (
    F64,
    as_float64,
    make_batch,
    parameters,
    perturb,
    stacked_members,
    stub,
    td_error,
)
from tests.support.servers import running_server

RTOL = 1e-5
CPU = torch.device("cpu")
SPEC = Bounded(-1.0, 1.0, (1,), dtype=F64)


class SquashedLocation(nn.Module):
    """TorchRL's side of the service's deterministic policy: tanh(loc) of the same actor."""

    def __init__(self, actor: nn.Module) -> None:
        super().__init__()
        self.net = actor

    def forward(self, observation: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.net(observation)[0])


def _tail(key: str) -> str:
    """A TorchRL parameter key as the service names it (no wrapper levels, no "net.")."""
    return key.split("module.")[-1].removeprefix("net.")


def _ddpg_model():
    return as_float64(demo_ddpg_model(CPU))


def _actor(model) -> Actor:
    return Actor(
        SquashedLocation(copy.deepcopy(model.actor_network)), in_keys=["observation"], spec=SPEC
    )


def _load(params, stacked: dict, ensemble: bool) -> None:
    for key, value in params.flatten_keys(".").items():
        source = stacked[_tail(key)]
        value.data.copy_(source if ensemble else source[0])


def _batch(seed: int = 0):
    return make_batch(16, 3, lambda g: torch.rand(16, 1, generator=g, dtype=F64) * 1.8 - 0.9, seed)


def _ddpg_oracle(model, **options) -> DDPGLoss:
    member = copy.deepcopy(model.qvalue_network.members[0])
    loss = DDPGLoss(
        _actor(model), ValueOperator(member, in_keys=["observation", "action"]), **options
    )
    loss.make_value_estimator(ValueEstimators.TD0, gamma=torch.tensor(0.99, dtype=F64))
    if options.get("delay_value", True):
        targets = stacked_members(model.target_qvalue_network)
        _load(loss.target_value_network_params, targets, False)
    if options.get("delay_actor", False):
        for key, value in loss.target_actor_network_params.flatten_keys(".").items():
            value.data.copy_(model.target_actor_network.state_dict()[_tail(key)])
    return loss


def _td3_oracle(model, **options) -> TD3Loss:
    member = copy.deepcopy(model.qvalue_network.members[0])
    loss = TD3Loss(
        _actor(model),
        ValueOperator(member, in_keys=["observation", "action"]),
        action_spec=SPEC,
        num_qvalue_nets=2,
        **options,
    )
    loss.make_value_estimator(ValueEstimators.TD0, gamma=torch.tensor(0.99, dtype=F64))
    _load(loss.qvalue_network_params, stacked_members(model.qvalue_network), True)
    if options.get("delay_qvalue", True):
        _load(loss.target_qvalue_network_params, stacked_members(model.target_qvalue_network), True)
    if options.get("delay_actor", True):
        for key, value in loss.target_actor_network_params.flatten_keys(".").items():
            value.data.copy_(model.target_actor_network.state_dict()[_tail(key)])
    return loss


def _ask(port: int, name: str, batch, field: str, message, **request) -> pb.ComputeLossResponse:
    built = pb.ComputeLossRequest(
        model_name=name, trajectory=batch.trajectory(), return_td_error=True, **request
    )
    getattr(built, field).CopyFrom(message)
    return stub(port).ComputeLoss(built)


@pytest.mark.parametrize(
    ("options", "wire"),
    [
        ({}, {}),
        (
            {"delay_actor": True, "loss_function": "smooth_l1"},
            {"delay_actor": True, "loss_function": pb.CRITIC_LOSS_SMOOTH_L1},
        ),
        ({"delay_value": False}, {"delay_value": False}),
    ],
)
def test_ddpg_terms_equal_torchrl(options: dict, wire: dict) -> None:
    model = _ddpg_model()
    perturb(model.target_qvalue_network, 1)
    perturb(model.target_actor_network, 2)
    oracle = _ddpg_oracle(model, **options)
    batch = _batch()
    td = batch.tensordict()
    expected = oracle(td)
    with running_server(models={"demo_ddpg": model}) as server:
        response = _ask(server.port, "demo_ddpg", batch, "ddpg", pb.DDPGLoss(**wire))
    metrics = dict(response.metrics)
    assert set(metrics) == {"loss_actor", "loss_value", "pred_value_max", "target_value_max"}
    for key in metrics:
        assert metrics[key] == pytest.approx(float(expected[key].detach()), rel=RTOL), key
    total = float((expected["loss_actor"] + expected["loss_value"]).detach())
    assert response.loss == pytest.approx(total, rel=RTOL)
    torch.testing.assert_close(td_error(response), td["td_error"], rtol=RTOL, atol=1e-12)


@pytest.mark.parametrize(
    ("options", "wire"),
    [
        ({}, {}),
        (
            {"policy_noise": 0.5, "noise_clip": 0.3, "loss_function": "l2"},
            {"policy_noise": 0.5, "noise_clip": 0.3, "loss_function": pb.CRITIC_LOSS_L2},
        ),
        (
            {"delay_actor": False, "delay_qvalue": False},
            {"delay_actor": False, "delay_qvalue": False},
        ),
    ],
)
def test_td3_terms_equal_torchrl(options: dict, wire: dict) -> None:
    model = as_float64(demo_sac_model(CPU))
    perturb(model.target_qvalue_network, 1)
    perturb(model.target_actor_network, 2)
    oracle = _td3_oracle(model, **options)
    batch = _batch()
    td = batch.tensordict()
    torch.manual_seed(21)
    expected = oracle(td)
    with running_server(models={"demo_sac": model}) as server:
        response = _ask(server.port, "demo_sac", batch, "td3", pb.TD3Loss(seed=21, **wire))
    metrics = dict(response.metrics)
    assert set(metrics) == {"loss_actor", "loss_qvalue"}
    for key in metrics:
        assert metrics[key] == pytest.approx(float(expected[key].detach()), rel=RTOL), key
    torch.testing.assert_close(td_error(response), td["td_error"], rtol=RTOL, atol=1e-12)


def test_td3_updates_follow_the_delayed_actor_schedule() -> None:
    """Four updates, policy_update_delay 2: TorchRL's TD3 recipe (Q every update; actor and
    SoftUpdate on the 2nd and 4th), one Adam; parameters and both targets equal after each."""
    model = as_float64(demo_sac_model(CPU))
    oracle = _td3_oracle(model)
    updater = SoftUpdate(oracle, tau=0.1)
    optimizer = torch.optim.Adam(oracle.parameters(), lr=3e-4)
    moved = []
    with running_server(models={"demo_sac": model}) as server:
        before = parameters(server.port, "demo_sac")
        for step in range(4):
            batch = _batch(seed=step)
            response = _ask(
                server.port,
                "demo_sac",
                batch,
                "td3",
                pb.TD3Loss(seed=step, policy_update_delay=2),
                apply_update=True,
                target_update=pb.TargetUpdate(tau=0.1),
            )
            moved.append(response.targets_updated)
            torch.manual_seed(step)
            out = oracle(batch.tensordict())
            update_actor = (step + 1) % 2 == 0
            optimizer.zero_grad(set_to_none=True)
            (out["loss_qvalue"] + (out["loss_actor"] if update_actor else 0)).backward()
            optimizer.step()
            if update_actor:
                updater.step()
        ours = parameters(server.port, "demo_sac")
    assert moved == [False, True, False, True]
    checks = {
        "actor_network.": (oracle.actor_network_params, False),
        "target_actor_network.": (oracle.target_actor_network_params, False),
        "qvalue_network.": (oracle.qvalue_network_params, True),
        "target_qvalue_network.": (oracle.target_qvalue_network_params, True),
    }
    for prefix, (params, ensemble) in checks.items():
        for key, value in params.flatten_keys(".").items():
            name = _tail(key)
            if ensemble:
                mine = torch.stack([ours[f"{prefix}members.{i}.{name}"] for i in range(2)])
            else:
                mine = ours[f"{prefix}{name}"]
            torch.testing.assert_close(mine, value.detach(), rtol=1e-6, atol=1e-9)
    assert not torch.equal(
        ours["target_actor_network.body.0.weight"], before["target_actor_network.body.0.weight"]
    )


@pytest.mark.parametrize(("alpha", "wire"), [(2.5, {}), (1.0, {"alpha": 1.0})])
def test_td3_bc_terms_equal_torchrl(alpha: float, wire: dict) -> None:
    from torchrl.objectives import TD3BCLoss

    model = as_float64(demo_sac_model(CPU))
    perturb(model.target_qvalue_network, 1)
    member = copy.deepcopy(model.qvalue_network.members[0])
    oracle = TD3BCLoss(
        _actor(model),
        ValueOperator(member, in_keys=["observation", "action"]),
        action_spec=SPEC,
        num_qvalue_nets=2,
        alpha=alpha,
    )
    oracle.make_value_estimator(ValueEstimators.TD0, gamma=torch.tensor(0.99, dtype=F64))
    _load(oracle.qvalue_network_params, stacked_members(model.qvalue_network), True)
    _load(oracle.target_qvalue_network_params, stacked_members(model.target_qvalue_network), True)
    batch = _batch()
    td = batch.tensordict()
    torch.manual_seed(8)
    expected = oracle(td)
    with running_server(models={"demo_sac": model}) as server:
        response = _ask(server.port, "demo_sac", batch, "td3_bc", pb.TD3BCLoss(seed=8, **wire))
    metrics = dict(response.metrics)
    assert set(metrics) == {"loss_actor", "loss_qvalue", "bc_loss", "lmbd"}
    for key in metrics:
        assert metrics[key] == pytest.approx(float(expected[key].detach()), rel=RTOL), key
    torch.testing.assert_close(td_error(response), td["td_error"], rtol=RTOL, atol=1e-12)


def test_ddpg_update_with_delay_actor_moves_both_targets_like_torchrl() -> None:
    """Two updates with delay_actor: the actor, the Q-network and both targets follow TorchRL's
    Adam step + SoftUpdate (which then moves the target actor too)."""
    model = _ddpg_model()
    oracle = _ddpg_oracle(model, delay_actor=True)
    updater = SoftUpdate(oracle, tau=0.2)
    optimizer = torch.optim.Adam(oracle.parameters(), lr=3e-4)
    with running_server(models={"demo_ddpg": model}) as server:
        for step in range(2):
            batch = _batch(seed=step)
            response = _ask(
                server.port,
                "demo_ddpg",
                batch,
                "ddpg",
                pb.DDPGLoss(delay_actor=True),
                apply_update=True,
                target_update=pb.TargetUpdate(tau=0.2),
            )
            assert response.targets_updated
            out = oracle(batch.tensordict())
            optimizer.zero_grad()
            (out["loss_actor"] + out["loss_value"]).backward()
            optimizer.step()
            updater.step()
        ours = parameters(server.port, "demo_ddpg")
    for prefix, params in (
        ("actor_network.", oracle.actor_network_params),
        ("target_actor_network.", oracle.target_actor_network_params),
        ("qvalue_network.members.0.", oracle.value_network_params),
        ("target_qvalue_network.members.0.", oracle.target_value_network_params),
    ):
        flat = dict(params.flatten_keys(".").items())
        assert flat
        for key, value in flat.items():
            torch.testing.assert_close(
                ours[f"{prefix}{_tail(key)}"], value.detach(), rtol=1e-6, atol=1e-9
            )
