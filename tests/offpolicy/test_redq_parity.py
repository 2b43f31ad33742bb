"""redq over the wire against TorchRL 0.14.1's REDQLoss on the same float64 networks (a Q
ensemble of 10) and the same draws (the target subset, then the actions): every scalar,
td_error, then one applied update with SoftUpdate, log α included."""

from __future__ import annotations

import copy
from dataclasses import replace

import pytest
import torch
from torchrl.data import Bounded
from torchrl.modules import ProbabilisticActor, TanhNormal, ValueOperator
from torchrl.objectives import REDQLoss, SoftUpdate, ValueEstimators

from service.models.demo_offpolicy import StateActionMLP, demo_sac_model
from service.models.ensemble import QValueEnsemble
from service.models.model import Model
from service.models.qvalue import QValueNetworkSpec
from service.models.targets import attach_offpolicy
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
MEMBERS = 10
TERMS = ("loss_actor", "loss_qvalue", "loss_alpha", "alpha", "entropy")


def _tail(key: str) -> str:
    return key.split("module.")[-1]


def _model():
    """demo_sac's actor with a Q ensemble of 10 small members."""
    base = demo_sac_model(CPU)
    torch.manual_seed(12)
    ensemble = QValueEnsemble([StateActionMLP(3, 1, hidden=16) for _ in range(MEMBERS)])
    manifest = replace(
        base.manifest,
        name="redq",
        qvalue_network=QValueNetworkSpec(
            file="<built-in>", kind="state_action", ensemble_size=MEMBERS
        ),
    )
    model = Model(manifest, CPU, actor_network=base.actor_network, qvalue_network=ensemble)
    return as_float64(attach_offpolicy(model))


def _oracle(model, **options) -> REDQLoss:
    actor = ProbabilisticActor(
        tdmodule(copy.deepcopy(model.actor_network), ["observation"], ["loc", "scale"]),
        in_keys=["loc", "scale"],
        distribution_class=TanhNormal,
        spec=Bounded(-1.0, 1.0, (1,), dtype=F64),
    )
    qvalue = ValueOperator(
        copy.deepcopy(model.qvalue_network.members[0]), in_keys=["observation", "action"]
    )
    loss = REDQLoss(actor, qvalue, num_qvalue_nets=MEMBERS, **options)
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
        ({"sub_sample_len": 3, "alpha_init": 0.05}, {"sub_sample_len": 3, "alpha_init": 0.05}),
    ],
)
def test_redq_terms_equal_torchrl(options: dict, wire: dict) -> None:
    model = _model()
    perturb(model.target_qvalue_network, 2)  # targets that differ from the online ones
    oracle = _oracle(model, **options)
    batch = _batch()
    td = batch.tensordict()
    torch.manual_seed(17)
    expected = oracle(td)
    with running_server(models={"redq": model}) as server:
        response = stub(server.port).ComputeLoss(
            pb.ComputeLossRequest(
                model_name="redq",
                trajectory=batch.trajectory(),
                redq=pb.REDQLoss(seed=17, **wire),
                return_td_error=True,
            )
        )
    metrics = dict(response.metrics)
    assert set(metrics) == set(TERMS)
    for key in TERMS:
        assert metrics[key] == pytest.approx(float(expected[key].detach()), rel=RTOL), key
    torch.testing.assert_close(td_error(response), td["td_error"], rtol=RTOL, atol=1e-12)


def test_redq_update_equals_torchrl_step_and_soft_update() -> None:
    model = _model()
    oracle = _oracle(model)
    updater = SoftUpdate(oracle, tau=0.1)
    optimizer = torch.optim.Adam(oracle.parameters(), lr=3e-4)
    batch = _batch()
    with running_server(models={"redq": model}) as server:
        response = stub(server.port).ComputeLoss(
            pb.ComputeLossRequest(
                model_name="redq",
                trajectory=batch.trajectory(),
                redq=pb.REDQLoss(seed=3),
                apply_update=True,
                target_update=pb.TargetUpdate(tau=0.1),
            )
        )
        ours = parameters(server.port, "redq")
    assert response.targets_updated
    torch.manual_seed(3)
    out = oracle(batch.tensordict())
    optimizer.zero_grad()
    (out["loss_actor"] + out["loss_qvalue"] + out["loss_alpha"]).backward()
    optimizer.step()
    updater.step()
    for prefix, params, ensemble in (
        ("actor_network.", oracle.actor_network_params, False),
        ("qvalue_network.", oracle.qvalue_network_params, True),
        ("target_qvalue_network.", oracle.target_qvalue_network_params, True),
    ):
        for key, value in params.flatten_keys(".").items():
            name = _tail(key)
            if ensemble:
                mine = torch.stack([ours[f"{prefix}members.{i}.{name}"] for i in range(MEMBERS)])
            else:
                mine = ours[f"{prefix}{name}"]
            torch.testing.assert_close(mine, value.detach(), rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(
        ours["log_alpha"], oracle.log_alpha.detach().to(F64), rtol=1e-6, atol=1e-9
    )
