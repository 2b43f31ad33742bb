"""`advantage_client.torchrl`: the remote estimators against TorchRL's own, on a real server.

Each remote estimator is compared with the TorchRL estimator it stands for (the oracle), on the
same tensordict: TorchRL's layouts (``[B, T, 1]``, time first, time named ``"time"``, agents as a
feature dimension), nested keys set with ``set_keys``, values from a local critic, from the
tensordict, or from the server's demo network, per-step γ from ``steps_to_next_obs``, and the
loss-facing side (``make_value_estimator`` with an instance and with the class, ``set_keys``
forwarded by the loss, in-place writes).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import torch
from advantage_client import AdvantageClient
from advantage_client.torchrl import (
    RemoteGAE,
    RemoteMultiAgentGAE,
    RemoteTD0,
    RemoteTD1,
    RemoteTDLambda,
    RemoteVTrace,
    remote_estimator_class,
    remote_value_estimator,
)
from tensordict import TensorDict
from tensordict.nn import TensorDictModule
from torchrl.modules import QValueActor
from torchrl.objectives import ClipPPOLoss, DQNLoss, ValueEstimators
from torchrl.objectives.value import (
    GAE,
    MultiAgentGAE,
    TD0Estimator,
    TD1Estimator,
    TDLambdaEstimator,
    VTrace,
)

from tests.support.torchrl_reference import torchrl_modules

OBS = 4
# float32 rounding: the loop estimators are bitwise equal; TorchRL's vectorised TD(1)/TD(λ)
# sum in another order (a few ulps over 30 steps).
ATOL = 2e-6
RTOL = 2e-6

# (TorchRL class, remote class, knobs)
PAIRS = [
    (GAE, RemoteGAE, {"lmbda": 0.95}),
    (TDLambdaEstimator, RemoteTDLambda, {"lmbda": 0.9}),
    (TD0Estimator, RemoteTD0, {}),
    (TD1Estimator, RemoteTD1, {}),
]
IDS = ["gae", "td_lambda", "td0", "td1"]


@pytest.fixture(scope="module")
def client(grpc_target: str) -> Iterator[AdvantageClient]:
    with AdvantageClient(grpc_target, timeout=30) as c:
        yield c


def _critic(seed: int = 1) -> TensorDictModule:
    torch.manual_seed(seed)
    return TensorDictModule(
        torch.nn.Sequential(torch.nn.Linear(OBS, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1)),
        in_keys=["observation"],
        out_keys=["state_value"],
    )


def _batch(batch: tuple[int, ...], seed: int = 0, time_dim: int = -1) -> TensorDict:
    """A tensordict of batch size `batch` with time at `time_dim`: chained observations, ~10%
    done, half of them terminated, the last step of each segment not done."""
    g = torch.Generator().manual_seed(seed)
    time_dim = time_dim % len(batch)
    steps = batch[time_dim]
    chained = list(batch)
    chained[time_dim] = steps + 1
    obs = torch.randn(*chained, OBS, generator=g)
    done = torch.rand(*batch, 1, generator=g) < 0.1
    terminated = done & (torch.rand(*batch, 1, generator=g) < 0.5)
    return TensorDict(
        {
            "observation": obs.narrow(time_dim, 0, steps),
            "next": {
                "observation": obs.narrow(time_dim, 1, steps),
                "reward": torch.randn(*batch, 1, generator=g),
                "done": done,
                "terminated": terminated,
            },
        },
        batch_size=batch,
    )


def _assert_same(local: TensorDict, remote: TensorDict, keys=("advantage", "value_target")):
    for key in keys:
        torch.testing.assert_close(remote[key], local[key], atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize(("torchrl_cls", "remote_cls", "knobs"), PAIRS, ids=IDS)
def test_equals_torchrl_with_a_local_critic(client, torchrl_cls, remote_cls, knobs) -> None:
    data = _batch((5, 30))
    critic = _critic()
    local = torchrl_cls(gamma=0.97, value_network=critic, **knobs)(data.clone())
    given = data.clone()
    remote = remote_cls(client, gamma=0.97, value_network=critic, **knobs)(given)
    assert remote is given  # written in place, as TorchRL does
    assert remote["advantage"].shape == (5, 30, 1)
    _assert_same(local, remote, ("advantage", "value_target", "state_value"))
    torch.testing.assert_close(remote["next", "state_value"], local["next", "state_value"])


@pytest.mark.parametrize(("torchrl_cls", "remote_cls", "knobs"), PAIRS, ids=IDS)
def test_values_from_the_tensordict(client, torchrl_cls, remote_cls, knobs) -> None:
    data = _batch((3, 17), seed=2)
    g = torch.Generator().manual_seed(3)
    data["state_value"] = torch.randn(3, 17, 1, generator=g)
    data["next", "state_value"] = torch.randn(3, 17, 1, generator=g)
    local = torchrl_cls(gamma=0.9, value_network=None, **knobs)(data.clone())
    remote = remote_cls(client, gamma=0.9, **knobs)(data.clone())
    _assert_same(local, remote)


@pytest.mark.parametrize(
    ("batch", "time_dim"), [((30, 4), 0), ((2, 30, 3), 1)], ids=["time-first", "time-middle"]
)
@pytest.mark.parametrize(("torchrl_cls", "remote_cls", "knobs"), PAIRS, ids=IDS)
def test_time_dim(client, torchrl_cls, remote_cls, knobs, batch, time_dim) -> None:
    data = _batch(batch, seed=4, time_dim=time_dim)
    critic = _critic()
    local = torchrl_cls(gamma=0.95, value_network=critic, **knobs)
    remote = remote_cls(client, gamma=0.95, value_network=critic, **knobs)
    if torchrl_cls in (GAE,):  # GAE takes time_dim in its constructor and its call
        expected = local(data.clone(), time_dim=time_dim)
        got = remote(data.clone(), time_dim=time_dim)
    else:  # the others read the "time" name (or the attribute)
        named = data.clone()
        named.names = [("time" if i == time_dim else None) for i in range(len(batch))]
        expected = local(named.clone())
        got = remote(named.clone())
    _assert_same(expected, got)


@pytest.mark.parametrize(("torchrl_cls", "remote_cls", "knobs"), PAIRS, ids=IDS)
@pytest.mark.parametrize("budget", [1, 3])
def test_shifted_single_value_call(client, torchrl_cls, remote_cls, knobs, budget) -> None:
    """shifted=True: one value-network call over [T + budget] steps; samples after the budget's
    truncations are dropped (zeroed, marked in "shifted_valid"), as in TorchRL."""
    data = _batch((4, 25), seed=28)
    truncated = data["next", "done"] & ~data["next", "terminated"]
    assert truncated.sum(1).max() > 1  # more truncations than budget 1 keeps
    data.names = [None, "time"]
    critic = _critic()
    local = torchrl_cls(
        gamma=0.95, value_network=critic, shifted=True, shifted_budget=budget, **knobs
    )
    remote = remote_cls(
        client, gamma=0.95, value_network=critic, shifted=True, shifted_budget=budget, **knobs
    )
    expected, got = local(data.clone()), remote(data.clone())
    assert torch.equal(got["shifted_valid"], expected["shifted_valid"])
    if budget == 1:
        assert not expected["shifted_valid"].all()  # some samples were dropped
    _assert_same(expected, got)


def test_shifted_with_average_gae_is_refused(client) -> None:
    data = _batch((2, 25), seed=28)
    remote = RemoteGAE(
        client, gamma=0.95, lmbda=0.9, value_network=_critic(), shifted=True, average_gae=True
    )
    with pytest.raises(ValueError, match="average_gae with shifted=True"):
        remote(data)


def test_time_named_in_the_tensordict(client) -> None:
    data = _batch((20, 3), seed=5, time_dim=0)
    data.names = ["time", None]
    critic = _critic()
    expected = GAE(gamma=0.99, lmbda=0.9, value_network=critic)(data.clone())
    got = RemoteGAE(client, gamma=0.99, lmbda=0.9, value_network=critic)(data.clone())
    _assert_same(expected, got)


def test_multi_agent_nested_keys(client) -> None:
    """MAPPO's layout: batch [B, T], per-agent reward/done/value under "agents" with shape
    [B, T, n_agents, 1], keys given with set_keys."""
    agents = 3
    g = torch.Generator().manual_seed(6)
    B, T = 4, 25
    obs = torch.randn(B, T + 1, agents, OBS, generator=g)
    done = (torch.rand(B, T, 1, 1, generator=g) < 0.1).expand(B, T, agents, 1)
    data = TensorDict(
        {
            "agents": TensorDict({"observation": obs[:, :-1]}, [B, T, agents]),
            "next": {
                "agents": TensorDict(
                    {
                        "observation": obs[:, 1:],
                        "reward": torch.randn(B, T, agents, 1, generator=g),
                        "done": done.clone(),
                        "terminated": done.clone(),
                    },
                    [B, T, agents],
                ),
            },
        },
        batch_size=[B, T],
    )
    torch.manual_seed(7)
    critic = TensorDictModule(
        torch.nn.Linear(OBS, 1),
        in_keys=[("agents", "observation")],
        out_keys=[("agents", "state_value")],
    )
    keys = {
        "value": ("agents", "state_value"),
        "reward": ("agents", "reward"),
        "done": ("agents", "done"),
        "terminated": ("agents", "terminated"),
        "advantage": ("agents", "advantage"),
        "value_target": ("agents", "value_target"),
    }
    local = GAE(gamma=0.99, lmbda=0.95, value_network=critic)
    remote = RemoteGAE(client, gamma=0.99, lmbda=0.95, value_network=critic)
    local.set_keys(**keys)
    remote.set_keys(**keys)
    expected = local(data.clone())
    got = remote(data.clone())
    assert got["agents", "advantage"].shape == (B, T, agents, 1)
    _assert_same(expected, got, (("agents", "advantage"), ("agents", "value_target")))


def _team_batch(B: int, T: int, agents: int, seed: int) -> TensorDict:
    """MAPPO's cooperative layout: per-agent observations under "agents", team-shared reward,
    done and terminated [B, T, 1] at the root of "next"."""
    g = torch.Generator().manual_seed(seed)
    obs = torch.randn(B, T + 1, agents, OBS, generator=g)
    done = torch.rand(B, T, 1, generator=g) < 0.1
    return TensorDict(
        {
            "agents": TensorDict({"observation": obs[:, :-1]}, [B, T, agents]),
            "next": {
                "agents": TensorDict({"observation": obs[:, 1:]}, [B, T, agents]),
                "reward": torch.randn(B, T, 1, generator=g),
                "done": done,
                "terminated": done & (torch.rand(B, T, 1, generator=g) < 0.5),
            },
        },
        batch_size=[B, T],
    )


def test_multi_agent_gae_broadcasts_team_signals(client) -> None:
    data = _team_batch(3, 20, agents=4, seed=19)
    torch.manual_seed(20)
    critic = TensorDictModule(
        torch.nn.Linear(OBS, 1),
        in_keys=[("agents", "observation")],
        out_keys=[("agents", "state_value")],
    )
    local = MultiAgentGAE(gamma=0.98, lmbda=0.9, value_network=critic)
    remote = remote_value_estimator(
        ValueEstimators.MAGAE, client, gamma=0.98, lmbda=0.9, value_network=critic
    )
    assert isinstance(remote, RemoteMultiAgentGAE) and isinstance(remote, MultiAgentGAE)
    for estimator in (local, remote):
        estimator.set_keys(value=("agents", "state_value"))
    expected, got = local(data.clone()), remote(data.clone())
    assert got["advantage"].shape == (3, 20, 4, 1)
    _assert_same(expected, got)


def test_multi_agent_gae_refuses_what_it_cannot_match(client) -> None:
    with pytest.raises(ValueError, match="average_gae=True"):
        RemoteMultiAgentGAE(client, gamma=0.9, lmbda=0.9, average_gae=True)
    data = _team_batch(2, 5, agents=2, seed=21)
    with pytest.raises(KeyError, match="needs the state values"):
        RemoteMultiAgentGAE(client, gamma=0.9, lmbda=0.9)(data)


def test_keyword_call_like_torchrl(client) -> None:
    """TorchRL's estimators also take the tensordict's entries as keywords (``next_reward=``,
    …) and return (advantage, value_target)."""
    data = _batch((2, 9), seed=22)
    critic = _critic()
    kwargs = {
        "observation": data["observation"],
        "next_observation": data["next", "observation"],
        "next_reward": data["next", "reward"],
        "next_done": data["next", "done"],
        "next_terminated": data["next", "terminated"],
    }
    expected = GAE(gamma=0.9, lmbda=0.9, value_network=critic)(**kwargs)
    got = RemoteGAE(client, gamma=0.9, lmbda=0.9, value_network=critic)(**kwargs)
    assert len(got) == len(expected) == 2
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e, atol=ATOL, rtol=RTOL)


def test_the_asyncio_client_is_refused(grpc_target: str) -> None:
    from advantage_client import AsyncAdvantageClient

    async def scenario() -> None:  # the aio channel needs a running loop of its own
        async with AsyncAdvantageClient(grpc_target) as async_client:
            with pytest.raises(TypeError, match="synchronously"):
                RemoteGAE(async_client, gamma=0.9, lmbda=0.9)

    asyncio.run(scenario())


def test_steps_to_next_obs_gives_a_per_step_gamma(client) -> None:
    data = _batch((3, 20), seed=8)
    g = torch.Generator().manual_seed(9)
    data["steps_to_next_obs"] = torch.randint(1, 4, (3, 20, 1), generator=g)
    critic = _critic()
    for torchrl_cls, remote_cls, knobs in PAIRS:
        local = torchrl_cls(gamma=0.9, value_network=critic, **knobs)(data.clone())
        remote = remote_cls(client, gamma=0.9, value_network=critic, **knobs)(data.clone())
        _assert_same(local, remote)


def test_standardising_knobs(client) -> None:
    data = _batch((4, 30), seed=10)
    critic = _critic()
    expected = GAE(gamma=0.99, lmbda=0.95, value_network=critic, average_gae=True)(data.clone())
    got = RemoteGAE(client, gamma=0.99, lmbda=0.95, value_network=critic, average_gae=True)(
        data.clone()
    )
    _assert_same(expected, got)
    assert abs(float(got["advantage"].mean())) < 1e-5  # standardised, not the raw advantage
    for torchrl_cls, remote_cls, knobs in PAIRS[1:]:
        local = torchrl_cls(gamma=0.99, value_network=critic, average_rewards=True, **knobs)
        remote = remote_cls(client, gamma=0.99, value_network=critic, average_rewards=True, **knobs)
        expected, got = local(data.clone()), remote(data.clone())
        _assert_same(expected, got)
        # TorchRL writes the standardised rewards back into the tensordict; so does the remote.
        torch.testing.assert_close(got["next", "reward"], expected["next", "reward"])
        assert abs(float(got["next", "reward"].mean())) < 1e-6


def test_values_from_the_servers_network(client) -> None:
    """No critic and no values: the server's demo value network computes them; TorchRL's GAE
    with the same (seeded) network is the reference, values included."""
    data = _batch((3, 24), seed=11)
    value_operator, _ = torchrl_modules()
    expected = GAE(gamma=0.99, lmbda=0.95, value_network=value_operator)(data.clone())
    got = RemoteGAE(client, gamma=0.99, lmbda=0.95)(data.clone())
    _assert_same(expected, got, ("advantage", "value_target", "state_value"))
    # The server does not evaluate V(s') at terminated steps (never used): it answers 0 there.
    terminated = data["next", "terminated"]
    assert terminated.any()
    masked = torch.where(terminated, 0.0, expected["next", "state_value"])
    torch.testing.assert_close(got["next", "state_value"], masked)


def test_vtrace_equals_torchrl(client) -> None:
    data = _batch((3, 20), seed=12)
    value_operator, actor = torchrl_modules()
    g = torch.Generator().manual_seed(13)
    data["action"] = torch.randint(0, 2, (3, 20), generator=g)
    knobs = {"gamma": 0.98, "rho_thresh": 1.2, "c_thresh": 0.9}
    local = VTrace(value_network=value_operator, actor_network=actor, **knobs)
    remote = RemoteVTrace(client, value_network=value_operator, actor_network=actor, **knobs)
    key = local.tensor_keys.sample_log_prob  # "action_log_prob" in TorchRL 0.14
    assert remote.tensor_keys.sample_log_prob == key
    data[key] = -torch.rand(3, 20, generator=g) - 0.2
    expected, got = local(data.clone()), remote(data.clone())
    assert (expected["advantage"] != 0).all()
    _assert_same(expected, got)


def test_make_value_estimator_with_an_instance_and_keys_from_the_loss(client) -> None:
    value_operator, actor = torchrl_modules()
    data = _batch((2, 16), seed=14)
    data["action"] = torch.zeros(2, 16, dtype=torch.long)
    data["action_log_prob"] = torch.full((2, 16), -0.69)
    loss = ClipPPOLoss(actor, value_operator)
    loss.make_value_estimator(
        RemoteGAE(client, gamma=0.9, lmbda=0.8, value_network=loss.critic_network)
    )
    loss.set_keys(advantage="my_advantage", value_target="my_target")
    assert isinstance(loss.value_estimator, RemoteGAE) and isinstance(loss.value_estimator, GAE)
    reference = ClipPPOLoss(actor, value_operator)
    reference.make_value_estimator(ValueEstimators.GAE, gamma=0.9, lmbda=0.8)
    reference.set_keys(advantage="my_advantage", value_target="my_target")
    got = loss.value_estimator(data.clone())
    expected = reference.value_estimator(data.clone())
    _assert_same(expected, got, ("my_advantage", "my_target"))
    assert "advantage" not in got
    # The loss runs on the remote estimator's output, with the same numbers.
    got_loss, expected_loss = loss(data.clone()), reference(data.clone())
    torch.testing.assert_close(got_loss["loss_objective"], expected_loss["loss_objective"])


def test_make_value_estimator_with_the_class_and_for_loss(client) -> None:
    """The class path builds the estimator with the hyperparameters given (TorchRL's rule: the
    value network too); `for_loss` picks up the loss's critic."""
    value_operator, actor = torchrl_modules()
    data = _batch((2, 12), seed=15)
    expected = TDLambdaEstimator(gamma=0.95, lmbda=0.9, value_network=value_operator)(data.clone())
    loss = ClipPPOLoss(actor, value_operator)
    loss.make_value_estimator(
        RemoteTDLambda,
        client=client,
        gamma=0.95,
        lmbda=0.9,
        value_network=loss.critic_network,
    )
    assert isinstance(loss.value_estimator, RemoteTDLambda)
    assert loss.value_type is RemoteTDLambda
    _assert_same(expected, loss.value_estimator(data.clone()))
    estimator = RemoteTDLambda.for_loss(loss, client=client, gamma=0.95, lmbda=0.9)
    assert estimator.value_network is loss.critic_network
    _assert_same(expected, estimator(data.clone()))


@pytest.mark.parametrize(("torchrl_cls", "remote_cls", "knobs"), PAIRS, ids=IDS)
def test_value_estimate_equals_torchrls(client, torchrl_cls, remote_cls, knobs) -> None:
    """`value_estimate` (what Q-learning losses call for their targets): the value target only,
    from the critic, and the caller's tensordict is not written."""
    data = _batch((3, 14), seed=16)
    critic = _critic()
    local = torchrl_cls(gamma=0.9, value_network=critic, **knobs)
    remote = remote_cls(client, gamma=0.9, value_network=critic, **knobs)
    given = data.clone()
    target = remote.value_estimate(given)
    torch.testing.assert_close(target, local.value_estimate(data.clone()), atol=ATOL, rtol=RTOL)
    assert "value_target" not in given and "state_value" not in given


@pytest.mark.parametrize(("torchrl_cls", "remote_cls", "knobs"), PAIRS[1:], ids=IDS[1:])
def test_value_estimate_from_a_given_next_value(client, torchrl_cls, remote_cls, knobs) -> None:
    """TD(0), TD(1), TD(λ): TorchRL's `next_value=` argument (V(s') only, no V(s) anywhere)."""
    data = _batch((2, 11), seed=23)
    next_value = torch.randn(2, 11, 1, generator=torch.Generator().manual_seed(24))
    expected = torchrl_cls(gamma=0.8, value_network=None, **knobs).value_estimate(
        data.clone(), next_value=next_value
    )
    got = remote_cls(client, gamma=0.8, **knobs).value_estimate(data, next_value=next_value)
    torch.testing.assert_close(got, expected, atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize(
    ("member", "remote_cls", "knobs"),
    [
        (ValueEstimators.TD0, RemoteTD0, {}),
        (ValueEstimators.TDLambda, RemoteTDLambda, {"lmbda": 0.9}),
    ],
    ids=["td0", "td_lambda"],
)
def test_dqn_loss_with_a_remote_target(client, member, remote_cls, knobs) -> None:
    """DQN (target network, `value_estimate` with target_params): the same loss as with
    TorchRL's estimator, once the loss's keys reach the instance (TorchRL's rule: an instance
    keeps its own keys until the loss's set_keys)."""

    def dqn() -> DQNLoss:
        torch.manual_seed(25)
        q_net = QValueActor(
            torch.nn.Linear(OBS, 2), in_keys=["observation"], action_space="categorical"
        )
        return DQNLoss(q_net, action_space="categorical", delay_value=True)

    data = _batch((4, 10), seed=26)
    data["action"] = torch.randint(0, 2, (4, 10), generator=torch.Generator().manual_seed(27))
    reference, loss = dqn(), dqn()
    reference.make_value_estimator(member, gamma=0.9, **knobs)
    loss.make_value_estimator(remote_cls.for_loss(loss, client=client, gamma=0.9, **knobs))
    with pytest.raises(KeyError, match="set the value key"):
        loss(data.clone())
    loss.set_keys(value=loss.tensor_keys.value)  # "chosen_action_value" reaches the estimator
    got, expected = loss(data.clone()), reference(data.clone())
    torch.testing.assert_close(got["loss"], expected["loss"], atol=ATOL, rtol=RTOL)


REMOTE_OF = {
    "TD0": (RemoteTD0, "TD0Estimator"),
    "TD1": (RemoteTD1, "TD1Estimator"),
    "TDLambda": (RemoteTDLambda, "TDLambdaEstimator"),
    "GAE": (RemoteGAE, "GAE"),
    "MAGAE": (RemoteMultiAgentGAE, "MultiAgentGAE"),
    "VTrace": (RemoteVTrace, "VTrace"),
}


def test_every_value_estimators_member_has_a_remote_class() -> None:
    assert sorted(m.name for m in ValueEstimators) == sorted(REMOTE_OF)


@pytest.mark.parametrize("member", list(ValueEstimators), ids=lambda m: m.name)
def test_value_estimators_members_and_names_pick_the_class(member) -> None:
    expected, torchrl_name = REMOTE_OF[member.name]
    assert torchrl_name in {c.__name__ for c in expected.__mro__}  # it subclasses TorchRL's
    assert remote_estimator_class(member) is expected
    assert remote_estimator_class(member.name) is expected
    assert remote_estimator_class(torchrl_name) is expected
    assert remote_estimator_class(torchrl_name.lower()) is expected


def test_unknown_names_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown estimator 'QValue'"):
        remote_estimator_class("QValue")


def test_remote_value_estimator_builds_from_a_member(client) -> None:
    estimator = remote_value_estimator(ValueEstimators.TDLambda, client, gamma=0.9, lmbda=0.5)
    assert isinstance(estimator, RemoteTDLambda)
    assert float(estimator.lmbda) == 0.5


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"differentiable": True}, "differentiable=True"),
        ({"group_key": "task"}, "group_key"),
        ({"auto_reset_env": True}, "auto_reset_env"),
    ],
)
def test_unsupported_options_are_refused(client, kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        RemoteGAE(client, gamma=0.9, lmbda=0.9, **kwargs)


def test_a_client_is_required() -> None:
    with pytest.raises(TypeError, match=r"client must be an advantage_client\.AdvantageClient"):
        RemoteGAE("localhost:50051", gamma=0.9, lmbda=0.9)


def test_one_value_without_the_other_is_refused(client) -> None:
    data = _batch((2, 5), seed=17)
    data["state_value"] = torch.zeros(2, 5, 1)
    with pytest.raises(KeyError, match="one state value"):
        RemoteGAE(client, gamma=0.9, lmbda=0.9)(data)


def test_server_errors_name_the_field(client) -> None:
    """A NaN reward is refused by the server, naming the field (the error reaches the caller)."""
    from advantage_client import InvalidArgumentError

    data = _batch((2, 5), seed=18)
    data["state_value"] = torch.zeros(2, 5, 1)
    data["next", "state_value"] = torch.zeros(2, 5, 1)
    data["next", "reward"] = torch.full((2, 5, 1), float("nan"))
    with pytest.raises(InvalidArgumentError, match="reward"):
        RemoteGAE(client, gamma=0.9, lmbda=0.9)(data)
