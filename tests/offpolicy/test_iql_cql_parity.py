"""iql and discrete_cql over the wire against TorchRL 0.14.1's IQLLoss / DiscreteCQLLoss on the
same float64 networks: every term and metric, td_error, then applied updates with SoftUpdate."""

from __future__ import annotations

import copy

import pytest
import torch
from torchrl.data import Bounded, Categorical
from torchrl.modules import ProbabilisticActor, QValueActor, TanhNormal, ValueOperator
from torchrl.objectives import DiscreteCQLLoss, IQLLoss, SoftUpdate, ValueEstimators

from service.models.demo_offpolicy import demo_dqn_model, demo_sac_model
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


def _tail(key: str) -> str:
    return key.split("module.")[-1]


def _iql_oracle(model, **options) -> IQLLoss:
    actor = ProbabilisticActor(
        tdmodule(copy.deepcopy(model.actor_network), ["observation"], ["loc", "scale"]),
        in_keys=["loc", "scale"],
        distribution_class=TanhNormal,
        spec=Bounded(-1.0, 1.0, (1,), dtype=F64),
    )
    qvalue = ValueOperator(
        copy.deepcopy(model.qvalue_network.members[0]), in_keys=["observation", "action"]
    )
    value = ValueOperator(copy.deepcopy(model.value_network), in_keys=["observation"])
    loss = IQLLoss(actor, qvalue, value, num_qvalue_nets=2, **options)
    loss.make_value_estimator(ValueEstimators.TD0, gamma=torch.tensor(0.99, dtype=F64))
    for params, ensemble in (
        (loss.qvalue_network_params, model.qvalue_network),
        (loss.target_qvalue_network_params, model.target_qvalue_network),
    ):
        stacked = stacked_members(ensemble)
        for key, value_ in params.flatten_keys(".").items():
            value_.data.copy_(stacked[_tail(key)])
    return loss


def _continuous_batch(seed: int = 0):
    return make_batch(16, 3, lambda g: torch.rand(16, 1, generator=g, dtype=F64) * 1.8 - 0.9, seed)


def _discrete_batch(seed: int = 0):
    return make_batch(16, 4, lambda g: torch.randint(0, 2, (16,), generator=g), seed)


@pytest.mark.parametrize(
    ("options", "wire"),
    [
        ({}, {}),
        (
            {"temperature": 3.0, "expectile": 0.8, "loss_function": "l2"},
            {"temperature": 3.0, "expectile": 0.8, "loss_function": pb.CRITIC_LOSS_L2},
        ),
    ],
)
def test_iql_terms_equal_torchrl(options: dict, wire: dict) -> None:
    model = as_float64(demo_sac_model(CPU))
    perturb(model.target_qvalue_network, 3)
    oracle = _iql_oracle(model, **options)
    batch = _continuous_batch()
    td = batch.tensordict()
    expected = oracle(td)
    with running_server(models={"demo_sac": model}) as server:
        response = stub(server.port).ComputeLoss(
            pb.ComputeLossRequest(
                model_name="demo_sac",
                trajectory=batch.trajectory(),
                iql=pb.IQLLoss(**wire),
                return_td_error=True,
            )
        )
    metrics = dict(response.metrics)
    assert set(metrics) == {"loss_actor", "loss_qvalue", "loss_value", "entropy"}
    for key, value in metrics.items():
        assert value == pytest.approx(float(expected[key].detach()), rel=RTOL), key
    total = sum(float(expected[k].detach()) for k in ("loss_actor", "loss_qvalue", "loss_value"))
    assert response.loss == pytest.approx(total, rel=RTOL)
    torch.testing.assert_close(td_error(response), td["td_error"], rtol=RTOL, atol=1e-12)


def test_iql_updates_equal_torchrl_step_and_soft_update() -> None:
    model = as_float64(demo_sac_model(CPU))
    oracle = _iql_oracle(model)
    updater = SoftUpdate(oracle, tau=0.1)
    optimizer = torch.optim.Adam(oracle.parameters(), lr=3e-4)
    with running_server(models={"demo_sac": model}) as server:
        for step in range(2):
            batch = _continuous_batch(seed=step)
            response = stub(server.port).ComputeLoss(
                pb.ComputeLossRequest(
                    model_name="demo_sac",
                    trajectory=batch.trajectory(),
                    iql=pb.IQLLoss(),
                    apply_update=True,
                    target_update=pb.TargetUpdate(tau=0.1),
                )
            )
            assert response.targets_updated
            out = oracle(batch.tensordict())
            optimizer.zero_grad()
            (out["loss_actor"] + out["loss_qvalue"] + out["loss_value"]).backward()
            optimizer.step()
            updater.step()
        ours = parameters(server.port, "demo_sac")
    checks = {
        "actor_network.": (oracle.actor_network_params, False),
        "value_network.": (oracle.value_network_params, False),
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


def _cql_oracle(model, **options) -> DiscreteCQLLoss:
    network = copy.deepcopy(model.qvalue_network)
    actor = QValueActor(
        network, in_keys=["observation"], spec=Categorical(2), action_space="categorical"
    )
    loss = DiscreteCQLLoss(actor, action_space="categorical", **options)
    loss.make_value_estimator(ValueEstimators.TD0, gamma=torch.tensor(0.99, dtype=F64))
    return loss


@pytest.mark.parametrize(
    ("options", "wire"),
    [
        ({}, {}),
        ({"loss_function": "smooth_l1"}, {"loss_function": pb.CRITIC_LOSS_SMOOTH_L1}),
        ({"delay_value": False}, {"delay_value": False}),
    ],
)
def test_discrete_cql_terms_equal_torchrl(options: dict, wire: dict) -> None:
    """Targets equal to the online network (as after loading): TorchRL 0.14.1's DiscreteCQLLoss
    bootstraps from the online network whatever delay_value says (it passes its target
    parameters as `params=`, which TD0Estimator.value_estimate ignores), so only then do the
    two agree with delay_value; the next test checks the service's use of the targets."""
    model = as_float64(demo_dqn_model(CPU))
    oracle = _cql_oracle(model, **options)
    batch = _discrete_batch()
    td = batch.tensordict()
    expected = oracle(td)
    with running_server(models={"demo_dqn": model}) as server:
        response = stub(server.port).ComputeLoss(
            pb.ComputeLossRequest(
                model_name="demo_dqn",
                trajectory=batch.trajectory(),
                discrete_cql=pb.DiscreteCQLLoss(**wire),
                return_td_error=True,
            )
        )
    metrics = dict(response.metrics)
    names = {"loss_qvalue", "loss_cql", "pred_value", "target_value", "td_error"}
    assert set(metrics) == names
    for key, value in metrics.items():
        assert value == pytest.approx(float(expected[key].detach().squeeze()), rel=RTOL), key
    total = float((expected["loss_qvalue"] + expected["loss_cql"]).detach())
    assert response.loss == pytest.approx(total, rel=RTOL)
    torch.testing.assert_close(
        td_error(response), td["td_error"].squeeze(-1), rtol=RTOL, atol=1e-12
    )


def test_discrete_cql_bootstraps_from_the_target_network() -> None:
    """With targets that differ from the online network, the TD target is the paper's
    r + γ(1 − terminated)·max_a Q̄(s′, a) (re-typed here), and loss_cql is unchanged."""
    model = as_float64(demo_dqn_model(CPU))
    perturb(model.target_qvalue_network, 4)
    batch = _discrete_batch()
    with torch.no_grad():
        q = model.qvalue_network(batch.observation)
        q_next = model.target_qvalue_network(batch.next_observation).max(-1).values
        target = batch.reward + 0.99 * torch.where(batch.terminated, 0.0, q_next)
        chosen = q.gather(-1, batch.action.unsqueeze(-1)).squeeze(-1)
        cql = (torch.logsumexp(q, -1) - chosen).mean()
    with running_server(models={"demo_dqn": model}) as server:
        response = stub(server.port).ComputeLoss(
            pb.ComputeLossRequest(
                model_name="demo_dqn",
                trajectory=batch.trajectory(),
                discrete_cql=pb.DiscreteCQLLoss(gamma=0.99),
                return_td_error=True,
            )
        )
    torch.testing.assert_close(td_error(response), (chosen - target).pow(2), rtol=1e-12, atol=1e-12)
    assert response.metrics["loss_cql"] == pytest.approx(float(cql), rel=1e-12)
    assert response.metrics["loss_qvalue"] == pytest.approx(
        float(0.5 * (chosen - target).pow(2).mean()), rel=1e-12
    )


def test_discrete_cql_update_equals_torchrl_step_and_soft_update() -> None:
    """One update from targets equal to the online network (where TorchRL's bootstrap agrees,
    see above): parameters and targets equal TorchRL's Adam step + SoftUpdate."""
    model = as_float64(demo_dqn_model(CPU))
    oracle = _cql_oracle(model)
    updater = SoftUpdate(oracle, tau=0.2)
    optimizer = torch.optim.Adam(oracle.parameters(), lr=3e-4)
    with running_server(models={"demo_dqn": model}) as server:
        for step in range(1):
            batch = _discrete_batch(seed=step)
            stub(server.port).ComputeLoss(
                pb.ComputeLossRequest(
                    model_name="demo_dqn",
                    trajectory=batch.trajectory(),
                    discrete_cql=pb.DiscreteCQLLoss(),
                    apply_update=True,
                    target_update=pb.TargetUpdate(tau=0.2),
                )
            )
            out = oracle(batch.tensordict())
            optimizer.zero_grad()
            (out["loss_qvalue"] + out["loss_cql"]).backward()
            optimizer.step()
            updater.step()
        ours = parameters(server.port, "demo_dqn")
    for prefix, params in (
        ("qvalue_network.", oracle.value_network_params),
        ("target_qvalue_network.", oracle.target_value_network_params),
    ):
        for key, value in params.flatten_keys(".").items():
            torch.testing.assert_close(
                ours[f"{prefix}{_tail(key)}"], value.detach(), rtol=1e-6, atol=1e-9
            )


def _discrete_iql_oracle(model, **options):
    from torch.distributions import Categorical as TorchCategorical
    from torchrl.objectives import DiscreteIQLLoss

    actor = ProbabilisticActor(
        tdmodule(copy.deepcopy(model.actor_network), ["observation"], ["logits"]),
        in_keys=["logits"],
        distribution_class=TorchCategorical,
    )
    qvalue = tdmodule(
        copy.deepcopy(model.qvalue_network.members[0]), ["observation"], ["state_action_value"]
    )
    value = ValueOperator(copy.deepcopy(model.value_network), in_keys=["observation"])
    loss = DiscreteIQLLoss(
        actor, qvalue, value, action_space="categorical", num_qvalue_nets=2, **options
    )
    loss.make_value_estimator(ValueEstimators.TD0, gamma=torch.tensor(0.99, dtype=F64))
    for params, ensemble in (
        (loss.qvalue_network_params, model.qvalue_network),
        (loss.target_qvalue_network_params, model.target_qvalue_network),
    ):
        stacked = stacked_members(ensemble)
        for key, value_ in params.flatten_keys(".").items():
            value_.data.copy_(stacked[_tail(key)])
    return loss


@pytest.mark.parametrize(
    ("options", "wire"),
    [({}, {}), ({"temperature": 2.0, "expectile": 0.7}, {"temperature": 2.0, "expectile": 0.7})],
)
def test_discrete_iql_terms_equal_torchrl(options: dict, wire: dict) -> None:
    from service.models.demo_offpolicy import demo_discrete_sac_model

    model = as_float64(demo_discrete_sac_model(CPU))
    perturb(model.target_qvalue_network, 5)
    oracle = _discrete_iql_oracle(model, **options)
    batch = _discrete_batch()
    td = batch.tensordict()
    expected = oracle(td)
    with running_server(models={"demo_discrete_sac": model}) as server:
        response = stub(server.port).ComputeLoss(
            pb.ComputeLossRequest(
                model_name="demo_discrete_sac",
                trajectory=batch.trajectory(),
                discrete_iql=pb.DiscreteIQLLoss(**wire),
                return_td_error=True,
            )
        )
    metrics = dict(response.metrics)
    assert set(metrics) == {"loss_actor", "loss_qvalue", "loss_value", "entropy"}
    for key, value in metrics.items():
        assert value == pytest.approx(float(expected[key].detach()), rel=RTOL), key
    torch.testing.assert_close(td_error(response), td["td_error"], rtol=RTOL, atol=1e-12)
