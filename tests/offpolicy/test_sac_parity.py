"""sac and discrete_sac over the wire against TorchRL 0.14.1's SACLoss / DiscreteSACLoss on the
same float64 networks and the same sampled noise (the request's seed ↔ torch.manual_seed): every
loss term and metric, td_error, then applied updates (Adam) with SoftUpdate, log α included."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torchrl.modules import ProbabilisticActor
from torchrl.objectives import DiscreteSACLoss, SoftUpdate, ValueEstimators

from service.models.demo_offpolicy import demo_discrete_sac_model, demo_sac_model
from service.pb.advantage.v1 import advantage_pb2 as pb
from tests.support.offpolicy import (
    F64,
    SAC_TERMS,
    as_float64,
    make_batch,
    parameters,
    perturb,
    sac_oracle,
    stacked_members,
    stub,
    td_error,
    tdmodule,
)
from tests.support.servers import running_server

RTOL = 1e-5
TERMS = SAC_TERMS
CPU = torch.device("cpu")


def _tail(key: str) -> str:
    """A TorchRL parameter key without its wrappers' "module." levels."""
    return key.split("module.")[-1]


def _discrete_oracle(model, gamma: float = 0.99, **options) -> DiscreteSACLoss:
    from torch.distributions import Categorical as TorchCategorical

    actor = ProbabilisticActor(
        tdmodule(copy.deepcopy(model.actor_network), ["observation"], ["logits"]),
        in_keys=["logits"],
        distribution_class=TorchCategorical,
    )
    qvalue = tdmodule(
        copy.deepcopy(model.qvalue_network.members[0]), ["observation"], ["action_value"]
    )
    loss = DiscreteSACLoss(
        actor, qvalue, action_space="categorical", num_actions=2, num_qvalue_nets=2, **options
    )
    loss.make_value_estimator(ValueEstimators.TD0, gamma=torch.tensor(gamma, dtype=F64))
    stacked = stacked_members(model.qvalue_network)
    for params in (loss.qvalue_network_params, loss.target_qvalue_network_params):
        for key, value in params.flatten_keys(".").items():
            value.data.copy_(stacked[_tail(key)])
    return loss


def _perturb_targets(model) -> None:
    """Targets that differ from the online networks, so using the wrong one shows."""
    perturb(model.target_qvalue_network, 7)


def _copy_targets(model, loss) -> None:
    stacked = stacked_members(model.target_qvalue_network)
    for key, value in loss.target_qvalue_network_params.flatten_keys(".").items():
        value.data.copy_(stacked[_tail(key)])


def _continuous_batch(seed: int = 0):
    return make_batch(16, 3, lambda g: torch.rand(16, 1, generator=g, dtype=F64) * 1.8 - 0.9, seed)


def _discrete_batch(seed: int = 0):
    return make_batch(16, 4, lambda g: torch.randint(0, 2, (16,), generator=g), seed)


SAC_CASES = [
    ({}, {}),
    ({"fixed_alpha": True, "alpha_init": 0.3}, {"fixed_alpha": True, "alpha_init": 0.3}),
    ({"alpha_init": 0.5, "target_entropy": -0.5}, {"alpha_init": 0.5, "target_entropy": -0.5}),
    ({"alpha_init": 5.0, "max_alpha": 2.0}, {"alpha_init": 5.0, "max_alpha": 2.0}),
    ({"loss_function": "l2"}, {"loss_function": pb.CRITIC_LOSS_L2}),
    ({"delay_qvalue": False}, {"delay_qvalue": False}),
]


def _metrics(response) -> dict[str, float]:
    return {"loss": response.loss, **dict(response.metrics)}


def _assert_terms(response, expected) -> None:
    ours = _metrics(response)
    total = sum(float(expected[k].detach()) for k in ("loss_actor", "loss_qvalue", "loss_alpha"))
    assert ours["loss"] == pytest.approx(total, rel=RTOL)
    assert set(ours) == {"loss", *TERMS}
    for term in TERMS:
        assert ours[term] == pytest.approx(float(expected[term].detach()), rel=RTOL, abs=1e-12), (
            term
        )


@pytest.mark.parametrize(("torchrl_options", "wire_options"), SAC_CASES)
def test_sac_terms_equal_torchrl(torchrl_options: dict, wire_options: dict) -> None:
    model = as_float64(demo_sac_model(CPU))
    _perturb_targets(model)
    oracle = sac_oracle(model, **torchrl_options)
    if torchrl_options.get("delay_qvalue", True):
        _copy_targets(model, oracle)
    batch = _continuous_batch()
    td = batch.tensordict()
    torch.manual_seed(11)
    expected = oracle(td)
    with running_server(models={"demo_sac": model}) as server:
        response = stub(server.port).ComputeLoss(
            pb.ComputeLossRequest(
                model_name="demo_sac",
                trajectory=batch.trajectory(),
                sac=pb.SACLoss(seed=11, **wire_options),
                return_td_error=True,
            )
        )
    _assert_terms(response, expected)
    torch.testing.assert_close(td_error(response), td["td_error"], rtol=RTOL, atol=1e-12)


@pytest.mark.parametrize(
    ("torchrl_options", "wire_options"),
    [
        ({}, {}),
        (
            {"target_entropy_weight": 0.5, "alpha_init": 0.2},
            {"target_entropy_weight": 0.5, "alpha_init": 0.2},
        ),
        (
            {"loss_function": "l1", "min_alpha": 2.0},
            {"loss_function": pb.CRITIC_LOSS_L1, "min_alpha": 2.0},
        ),
        ({"delay_qvalue": False}, {"delay_qvalue": False}),
    ],
)
def test_discrete_sac_terms_equal_torchrl(torchrl_options: dict, wire_options: dict) -> None:
    model = as_float64(demo_discrete_sac_model(CPU))
    _perturb_targets(model)
    oracle = _discrete_oracle(model, **torchrl_options)
    if torchrl_options.get("delay_qvalue", True):
        _copy_targets(model, oracle)
    batch = _discrete_batch()
    td = batch.tensordict()
    expected = oracle(td)
    with running_server(models={"demo_discrete_sac": model}) as server:
        response = stub(server.port).ComputeLoss(
            pb.ComputeLossRequest(
                model_name="demo_discrete_sac",
                trajectory=batch.trajectory(),
                discrete_sac=pb.DiscreteSACLoss(**wire_options),
                return_td_error=True,
            )
        )
    _assert_terms(response, expected)
    torch.testing.assert_close(td_error(response), td["td_error"], rtol=RTOL, atol=1e-12)


def _compare_parameters(ours: dict, expected: dict) -> None:
    """`expected`: wire prefix → (TorchRL parameters, whether they stack an ensemble)."""
    for prefix, (params, ensemble) in expected.items():
        flat = dict(params.flatten_keys(".").items())
        assert flat
        for key, value in flat.items():
            name = _tail(key)
            if ensemble:  # TorchRL stacks the members on a leading dimension
                mine = torch.stack(
                    [ours[f"{prefix}members.{i}.{name}"] for i in range(value.shape[0])]
                )
            else:
                mine = ours[f"{prefix}{name}"]
            torch.testing.assert_close(mine, value.detach(), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("discrete", [False, True])
def test_updates_equal_torchrl_step_and_soft_update(discrete: bool) -> None:
    """Two applied updates with α learnt: actor, Q ensemble, targets and log α all follow
    TorchRL's Adam step + SoftUpdate(tau=0.05)."""
    build = demo_discrete_sac_model if discrete else demo_sac_model
    model = as_float64(build(CPU))
    name = model.name
    oracle = (_discrete_oracle if discrete else sac_oracle)(model, alpha_init=0.7)
    updater = SoftUpdate(oracle, tau=0.05)
    optimizer = torch.optim.Adam(oracle.parameters(), lr=3e-4)
    with running_server(models={name: model}) as server:
        before = parameters(server.port, name)
        for step in range(2):
            batch = (_discrete_batch if discrete else _continuous_batch)(seed=step)
            loss = (
                pb.DiscreteSACLoss(alpha_init=0.7)
                if discrete
                else pb.SACLoss(alpha_init=0.7, seed=step)
            )
            request = pb.ComputeLossRequest(
                model_name=name,
                trajectory=batch.trajectory(),
                apply_update=True,
                target_update=pb.TargetUpdate(tau=0.05),
            )
            getattr(request, "discrete_sac" if discrete else "sac").CopyFrom(loss)
            response = stub(server.port).ComputeLoss(request)
            assert response.targets_updated and response.new_parameter_version == step + 1
            torch.manual_seed(step)
            out = oracle(batch.tensordict())
            _assert_terms(response, out)
            optimizer.zero_grad()
            (out["loss_actor"] + out["loss_qvalue"] + out["loss_alpha"]).backward()
            optimizer.step()
            updater.step()
        ours = parameters(server.port, name)
    _compare_parameters(
        ours,
        {
            "actor_network.": (oracle.actor_network_params, False),
            "qvalue_network.": (oracle.qvalue_network_params, True),
            "target_qvalue_network.": (oracle.target_qvalue_network_params, True),
        },
    )
    # TorchRL keeps log α in float32 (torch.tensor(math.log(alpha_init))), ours in the model dtype.
    torch.testing.assert_close(
        ours["log_alpha"], oracle.log_alpha.detach().to(F64), rtol=1e-6, atol=1e-9
    )
    assert float(ours["log_alpha"]) != pytest.approx(math.log(0.7), abs=1e-6)  # α was learnt
    first = "members.0.0.weight" if discrete else "members.0.body.0.weight"
    target = f"target_qvalue_network.{first}"
    assert not torch.equal(ours[target], before[target])  # the targets moved
