"""crossq over the wire against TorchRL 0.14.1's CrossQLoss on the same float64 networks and the
same draws: every scalar, td_error, and one applied update (no targets move)."""

from __future__ import annotations

import copy

import pytest
import torch
from torchrl.data import Bounded
from torchrl.modules import ProbabilisticActor, TanhNormal, ValueOperator
from torchrl.objectives import CrossQLoss, ValueEstimators

from service.models.demo_offpolicy import demo_sac_model
from service.pb.advantage.v1 import advantage_pb2 as pb
from tests.support.offpolicy import (
    F64,
    SAC_TERMS,
    as_float64,
    make_batch,
    parameters,
    stacked_members,
    stub,
    td_error,
    tdmodule,
)
from tests.support.servers import running_server

RTOL = 1e-5
CPU = torch.device("cpu")


def _tail(key: str) -> str:
    return key.split("module.")[-1]


def _oracle(model, **options) -> CrossQLoss:
    actor = ProbabilisticActor(
        tdmodule(copy.deepcopy(model.actor_network), ["observation"], ["loc", "scale"]),
        in_keys=["loc", "scale"],
        distribution_class=TanhNormal,
        spec=Bounded(-1.0, 1.0, (1,), dtype=F64),
    )
    qvalue = ValueOperator(
        copy.deepcopy(model.qvalue_network.members[0]), in_keys=["observation", "action"]
    )
    loss = CrossQLoss(actor, qvalue, num_qvalue_nets=2, **options)
    loss.make_value_estimator(ValueEstimators.TD0, gamma=torch.tensor(0.99, dtype=F64))
    stacked = stacked_members(model.qvalue_network)
    for key, value in loss.qvalue_network_params.flatten_keys(".").items():
        value.data.copy_(stacked[_tail(key)])
    return loss


def _batch(seed: int = 0):
    return make_batch(8, 3, lambda g: torch.rand(8, 1, generator=g, dtype=F64) * 1.8 - 0.9, seed)


@pytest.mark.parametrize(
    ("options", "wire"), [({}, {}), ({"alpha_init": 0.3}, {"alpha_init": 0.3})]
)
def test_crossq_terms_equal_torchrl(options: dict, wire: dict) -> None:
    model = as_float64(demo_sac_model(CPU))
    oracle = _oracle(model, **options)
    batch = _batch()
    td = batch.tensordict()
    torch.manual_seed(23)
    expected = oracle(td)
    with running_server(models={"demo_sac": model}) as server:
        response = stub(server.port).ComputeLoss(
            pb.ComputeLossRequest(
                model_name="demo_sac",
                trajectory=batch.trajectory(),
                crossq=pb.CrossQLoss(seed=23, **wire),
                return_td_error=True,
            )
        )
    metrics = dict(response.metrics)
    assert set(metrics) == set(SAC_TERMS)
    for key in SAC_TERMS:
        assert metrics[key] == pytest.approx(float(expected[key].detach()), rel=RTOL), key
    torch.testing.assert_close(td_error(response), td["td_error"], rtol=RTOL, atol=1e-12)


def test_crossq_update_equals_torchrl_step_and_moves_no_target() -> None:
    model = as_float64(demo_sac_model(CPU))
    oracle = _oracle(model)
    optimizer = torch.optim.Adam(oracle.parameters(), lr=3e-4)
    batch = _batch()
    with running_server(models={"demo_sac": model}) as server:
        before = parameters(server.port, "demo_sac")
        response = stub(server.port).ComputeLoss(
            pb.ComputeLossRequest(
                model_name="demo_sac",
                trajectory=batch.trajectory(),
                crossq=pb.CrossQLoss(seed=6),
                apply_update=True,
            )
        )
        ours = parameters(server.port, "demo_sac")
    assert response.updated and not response.targets_updated
    torch.manual_seed(6)
    out = oracle(batch.tensordict())
    optimizer.zero_grad()
    (out["loss_actor"] + out["loss_qvalue"] + out["loss_alpha"]).backward()
    optimizer.step()
    for prefix, params, ensemble in (
        ("actor_network.", oracle.actor_network_params, False),
        ("qvalue_network.", oracle.qvalue_network_params, True),
    ):
        for key, value in params.flatten_keys(".").items():
            name = _tail(key)
            if ensemble:
                mine = torch.stack([ours[f"{prefix}members.{i}.{name}"] for i in range(2)])
            else:
                mine = ours[f"{prefix}{name}"]
            torch.testing.assert_close(mine, value.detach(), rtol=1e-6, atol=1e-9)
    targets = [k for k in before if k.startswith("target_")]
    assert targets and all(torch.equal(ours[k], before[k]) for k in targets)
