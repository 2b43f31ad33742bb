"""cql (continuous) over the wire against TorchRL 0.14.1's CQLLoss on the same float64 networks
and the same draws (the request's seed ↔ torch.manual_seed): every term and metric, td_error,
then one applied update with SoftUpdate, log α included."""

from __future__ import annotations

import copy

import pytest
import torch
from torchrl.data import Bounded
from torchrl.modules import ProbabilisticActor, TanhNormal, ValueOperator
from torchrl.objectives import CQLLoss, SoftUpdate, ValueEstimators

from service.models.demo_offpolicy import demo_sac_model
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
    tdmodule,
)
from tests.support.servers import running_server

RTOL = 1e-5
CPU = torch.device("cpu")
TERMS = ("loss_actor", "loss_actor_bc", "loss_qvalue", "loss_cql", "loss_alpha", "alpha", "entropy")


def _tail(key: str) -> str:
    return key.split("module.")[-1]


def _oracle(model, **options) -> CQLLoss:
    actor = ProbabilisticActor(
        tdmodule(copy.deepcopy(model.actor_network), ["observation"], ["loc", "scale"]),
        in_keys=["loc", "scale"],
        distribution_class=TanhNormal,
        spec=Bounded(-1.0, 1.0, (1,), dtype=F64),
    )
    qvalue = ValueOperator(
        copy.deepcopy(model.qvalue_network.members[0]), in_keys=["observation", "action"]
    )
    loss = CQLLoss(actor, qvalue, **options)
    loss.make_value_estimator(ValueEstimators.TD0, gamma=torch.tensor(0.99, dtype=F64))
    for params, ensemble in (
        (loss.qvalue_network_params, model.qvalue_network),
        (loss.target_qvalue_network_params, model.target_qvalue_network),
    ):
        stacked = stacked_members(ensemble)
        for key, value in params.flatten_keys(".").items():
            value.data.copy_(stacked[_tail(key)])
    return loss


def _batch(seed: int = 0):
    return make_batch(8, 3, lambda g: torch.rand(8, 1, generator=g, dtype=F64) * 1.8 - 0.9, seed)


@pytest.mark.parametrize(
    ("options", "wire"),
    [
        ({}, {}),
        (
            {"temperature": 2.0, "min_q_weight": 0.5, "num_random": 3, "alpha_init": 0.5},
            {"temperature": 2.0, "min_q_weight": 0.5, "num_random": 3, "alpha_init": 0.5},
        ),
        ({"deterministic_backup": False}, {"deterministic_backup": False}),
    ],
)
def test_cql_terms_equal_torchrl(options: dict, wire: dict) -> None:
    model = as_float64(demo_sac_model(CPU))
    perturb(model.target_qvalue_network, 9)  # targets that differ from the online ones
    oracle = _oracle(model, **options)
    batch = _batch()
    td = batch.tensordict()
    torch.manual_seed(31)
    expected = oracle(td)
    with running_server(models={"demo_sac": model}) as server:
        response = stub(server.port).ComputeLoss(
            pb.ComputeLossRequest(
                model_name="demo_sac",
                trajectory=batch.trajectory(),
                cql=pb.CQLLoss(seed=31, **wire),
                return_td_error=True,
            )
        )
    metrics = dict(response.metrics)
    assert set(metrics) == set(TERMS)
    for key in TERMS:
        assert metrics[key] == pytest.approx(float(expected[key].detach()), rel=RTOL), key
    total = sum(
        float(expected[k].detach()) for k in ("loss_actor", "loss_qvalue", "loss_cql", "loss_alpha")
    )
    assert response.loss == pytest.approx(total, rel=RTOL)
    torch.testing.assert_close(td_error(response), td["td_error"], rtol=RTOL, atol=1e-12)


def test_cql_update_equals_torchrl_step_and_soft_update() -> None:
    model = as_float64(demo_sac_model(CPU))
    oracle = _oracle(model, alpha_init=0.7)
    updater = SoftUpdate(oracle, tau=0.1)
    optimizer = torch.optim.Adam(oracle.parameters(), lr=3e-4)
    batch = _batch()
    with running_server(models={"demo_sac": model}) as server:
        response = stub(server.port).ComputeLoss(
            pb.ComputeLossRequest(
                model_name="demo_sac",
                trajectory=batch.trajectory(),
                cql=pb.CQLLoss(seed=4, alpha_init=0.7),
                apply_update=True,
                target_update=pb.TargetUpdate(tau=0.1),
            )
        )
        ours = parameters(server.port, "demo_sac")
    assert response.targets_updated and response.new_parameter_version == 1
    torch.manual_seed(4)
    out = oracle(batch.tensordict())
    optimizer.zero_grad()
    (out["loss_actor"] + out["loss_qvalue"] + out["loss_cql"] + out["loss_alpha"]).backward()
    optimizer.step()
    updater.step()
    checks = {
        "actor_network.": (oracle.actor_network_params, False),
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
    torch.testing.assert_close(
        ours["log_alpha"], oracle.log_alpha.detach().to(F64), rtol=1e-6, atol=1e-9
    )
