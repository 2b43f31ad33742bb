"""The server-held off-policy state over the wire: a checkpoint (GetParameters) restores
targets, log α and the counters (SetParameters); alpha_init seeds α only until α first moves;
fixed_alpha never moves it."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from advantage_client import DQN, SAC, AdvantageClient

from service.models.demo_offpolicy import offpolicy_demo_models
from tests.support.servers import running_server

CPU = torch.device("cpu")


def _discrete(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "observation": rng.standard_normal((8, 4), dtype=np.float32),
        "next_observation": rng.standard_normal((8, 4), dtype=np.float32),
        "action": rng.integers(0, 2, 8),
        "reward": rng.standard_normal(8, dtype=np.float32),
        "done": np.zeros(8, dtype=bool),
    }


def _continuous(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "observation": rng.standard_normal((8, 3), dtype=np.float32),
        "next_observation": rng.standard_normal((8, 3), dtype=np.float32),
        "action": rng.uniform(-0.9, 0.9, (8, 1)).astype(np.float32),
        "reward": rng.standard_normal(8, dtype=np.float32),
        "done": np.zeros(8, dtype=bool),
    }


def test_a_checkpoint_restores_targets_and_counters() -> None:
    with (
        running_server(models=offpolicy_demo_models(CPU)) as server,
        AdvantageClient(f"127.0.0.1:{server.port}", timeout=30) as client,
    ):
        step = lambda seed: client.compute_offpolicy_loss(  # noqa: E731
            model="demo_dqn", loss=DQN(), apply_update=True, hard_interval=2, **_discrete(seed)
        )
        moved = [step(0).targets_updated, step(1).targets_updated]  # counter 0 → 1 → 2
        _, checkpoint = client.get_parameters("demo_dqn")
        assert int(checkpoint["offpolicy.target_update_counter"]) == 2
        assert int(checkpoint["offpolicy.qvalue_updates"]) == 2
        moved.append(step(2).targets_updated)  # counter 2 fires: copy, back to 0
        _, later = client.get_parameters("demo_dqn")
        assert not np.array_equal(
            later["target_qvalue_network.0.weight"], checkpoint["target_qvalue_network.0.weight"]
        )
        client.set_parameters(checkpoint, model="demo_dqn")
        _, restored = client.get_parameters("demo_dqn")
        assert restored.keys() == checkpoint.keys()
        assert all(np.array_equal(restored[k], checkpoint[k]) for k in checkpoint)
        moved.append(step(3).targets_updated)  # the restored counter (2) fires again
    assert moved == [False, False, True, True]


def test_alpha_init_seeds_alpha_until_it_first_moves() -> None:
    with (
        running_server(models=offpolicy_demo_models(CPU)) as server,
        AdvantageClient(f"127.0.0.1:{server.port}", timeout=30) as client,
    ):
        ask = lambda loss, update=False: client.compute_offpolicy_loss(  # noqa: E731
            model="demo_sac", loss=loss, apply_update=update, **_continuous(0)
        )
        assert ask(SAC(alpha_init=3.0, seed=0)).metrics["alpha"] == 3.0  # a read moves nothing
        assert ask(SAC(seed=0)).metrics["alpha"] == 1.0  # the manifest's α
        fixed = ask(SAC(alpha_init=0.5, fixed_alpha=True, seed=0), update=True)
        assert fixed.metrics["alpha"] == 0.5
        _, state = client.get_parameters("demo_sac", prefixes="log_alpha")
        assert float(state["log_alpha"]) == 0.0  # fixed: log α stays at the manifest's
        ask(SAC(alpha_init=0.5, seed=0), update=True)  # seeds log α = log 0.5, then steps it
        _, state = client.get_parameters("demo_sac", prefixes=("log_alpha", "offpolicy."))
        assert abs(float(state["log_alpha"]) - math.log(0.5)) < 1e-3  # one Adam step away
        assert float(state["log_alpha"]) != math.log(0.5)
        assert int(state["offpolicy.alpha_updates"]) == 1
        later = ask(SAC(alpha_init=3.0, seed=0))  # ignored now: α has moved
        assert later.metrics["alpha"] == pytest.approx(
            math.exp(float(state["log_alpha"])), rel=1e-6
        )
