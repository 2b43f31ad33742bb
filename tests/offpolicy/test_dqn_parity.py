"""dqn over the wire against TorchRL 0.14.1's DQNLoss on the same float64 network: the loss and
td_error, then one applied update (Adam, as the manifest says) with SoftUpdate/HardUpdate."""

from __future__ import annotations

import copy

import pytest
import torch
from torchrl.data import Categorical
from torchrl.modules import QValueActor
from torchrl.objectives import DQNLoss, HardUpdate, SoftUpdate, ValueEstimators

from service.models.demo_offpolicy import demo_dqn_model
from service.pb.advantage.v1 import advantage_pb2 as pb
from tests.support.offpolicy import (
    F64,
    as_float64,
    make_batch,
    module_params,
    parameters,
    stub,
    td_error,
)
from tests.support.servers import running_server

RTOL = 1e-5
LOSS_FUNCTIONS = {
    "l2": pb.CRITIC_LOSS_L2,
    "l1": pb.CRITIC_LOSS_L1,
    "smooth_l1": pb.CRITIC_LOSS_SMOOTH_L1,
}
PREFIX = "module.0.module."  # QValueActor's wrapping of the Sequential


def _oracle(model, gamma: float, **options) -> DQNLoss:
    network = copy.deepcopy(model.qvalue_network)
    actor = QValueActor(
        network, in_keys=["observation"], spec=Categorical(2), action_space="categorical"
    )
    loss = DQNLoss(actor, action_space="categorical", **options)
    loss.make_value_estimator(ValueEstimators.TD0, gamma=torch.tensor(gamma, dtype=F64))
    return loss


def _batch(seed: int = 0):
    return make_batch(16, 4, lambda g: torch.randint(0, 2, (16,), generator=g), seed)


CASES = [
    ({}, 0.99),
    ({"double_dqn": True}, 0.99),
    ({"delay_value": False}, 0.9),
    ({"loss_function": "smooth_l1", "double_dqn": True}, 0.5),
    ({"loss_function": "l1"}, 0.99),
]


@pytest.mark.parametrize(("options", "gamma"), CASES)
def test_loss_and_td_error_equal_torchrl(options: dict, gamma: float) -> None:
    model = as_float64(demo_dqn_model(torch.device("cpu")))
    # Make the target differ from the online network, so delay_value and double DQN matter.
    with torch.no_grad():
        for parameter in model.target_qvalue_network.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    oracle = _oracle(model, gamma, **options)
    if options.get("delay_value", True):  # else TorchRL's "target" is the online network itself
        for key, value in oracle.target_value_network_params.flatten_keys(".").items():
            value.data.copy_(model.target_qvalue_network.state_dict()[key.removeprefix(PREFIX)])
    batch = _batch()
    td = batch.tensordict()
    expected = oracle(td)
    message = pb.DQNLoss(
        gamma=gamma,
        double_dqn=options.get("double_dqn", False),
        **({"delay_value": options["delay_value"]} if "delay_value" in options else {}),
        **(
            {"loss_function": LOSS_FUNCTIONS[options["loss_function"]]}
            if "loss_function" in options
            else {}
        ),
    )
    with running_server(models={"demo_dqn": model}) as server:
        response = stub(server.port).ComputeLoss(
            pb.ComputeLossRequest(
                model_name="demo_dqn",
                trajectory=batch.trajectory(),
                dqn=message,
                return_td_error=True,
            )
        )
    assert response.loss == pytest.approx(float(expected["loss"].detach()), rel=RTOL)
    torch.testing.assert_close(
        td_error(response), td["td_error"].squeeze(-1), rtol=RTOL, atol=1e-12
    )
    assert not response.updated and response.new_parameter_version == 0


@pytest.mark.parametrize(
    ("rule", "updater"),
    [
        (pb.TargetUpdate(tau=0.1), lambda loss: SoftUpdate(loss, tau=0.1)),
        (
            pb.TargetUpdate(hard_interval=1),
            lambda loss: HardUpdate(loss, value_network_update_interval=1),
        ),
    ],
)
def test_updates_equal_torchrl_step_and_target_updater(rule, updater) -> None:
    """Three applied updates: online parameters, targets and the flags follow TorchRL's Adam
    step plus its updater (the hard rule copies on the second update only)."""
    model = as_float64(demo_dqn_model(torch.device("cpu")))
    oracle = _oracle(model, 0.99, double_dqn=True)
    target_updater = updater(oracle)
    optimizer = torch.optim.Adam(oracle.parameters(), lr=3e-4)
    moved = []
    with running_server(models={"demo_dqn": model}) as server:
        for step in range(3):
            batch = _batch(seed=step)
            response = stub(server.port).ComputeLoss(
                pb.ComputeLossRequest(
                    model_name="demo_dqn",
                    trajectory=batch.trajectory(),
                    dqn=pb.DQNLoss(double_dqn=True),
                    apply_update=True,
                    target_update=rule,
                    expected_parameter_version=step,
                )
            )
            moved.append(response.targets_updated)
            assert (response.parameter_version, response.new_parameter_version) == (step, step + 1)
            out = oracle(batch.tensordict())
            assert response.loss == pytest.approx(float(out["loss"].detach()), rel=RTOL)
            optimizer.zero_grad()
            out["loss"].backward()
            optimizer.step()
            target_updater.step()
        ours = parameters(server.port, "demo_dqn")
    assert moved == ([True] * 3 if rule.HasField("tau") else [False, True, False])
    online = module_params(oracle.value_network_params, PREFIX)
    target = module_params(oracle.target_value_network_params, PREFIX)
    assert online.keys() == target.keys() and len(online) == 6
    for key in online:
        torch.testing.assert_close(
            ours[f"qvalue_network.{key}"], online[key].detach(), rtol=1e-6, atol=1e-9
        )
        torch.testing.assert_close(
            ours[f"target_qvalue_network.{key}"], target[key].detach(), rtol=1e-6, atol=1e-9
        )
    # The targets moved away from their start (a test that cannot pass by doing nothing).
    start = as_float64(demo_dqn_model(torch.device("cpu"))).qvalue_network.state_dict()
    assert not torch.equal(ours["target_qvalue_network.0.weight"], start["0.weight"])
    assert int(ours["offpolicy.qvalue_updates"]) == 3
