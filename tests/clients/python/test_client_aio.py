"""The asyncio twin against the real demo server."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import numpy as np
import pytest
import torch
from advantage_client import (
    GAE,
    PPO,
    AdvantageClient,
    AsyncAdvantageClient,
    DeadlineExceededError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    TDLambda,
    VTrace,
)

from tests.support.client_data import make_batch, to_tensordict


async def test_models(grpc_target: str) -> None:
    async with AsyncAdvantageClient(grpc_target, timeout=60) as client:
        models = await client.list_models()
        assert [m.name for m in models] == ["demo"]
        assert await client.get_model() == models[0]
        with pytest.raises(NotFoundError) as info:
            await client.get_model("nope")
        assert info.value.code == grpc.StatusCode.NOT_FOUND and "nope" in info.value.message


@pytest.mark.parametrize(
    "estimator", [GAE(gamma=0.9), TDLambda(gamma=0.9), VTrace(gamma=0.9)], ids=repr
)
async def test_same_results_as_the_sync_client(grpc_target: str, estimator: Any) -> None:
    batch = make_batch(seed=11)
    arrays = batch.arrays(with_vtrace=isinstance(estimator, VTrace))
    with AdvantageClient(grpc_target, timeout=60) as sync:
        expected = sync.compute_advantage(estimator=estimator, **arrays)
    async with AsyncAdvantageClient(grpc_target, timeout=60) as client:
        result = await client.compute_advantage(estimator=estimator, **arrays)
        np.testing.assert_array_equal(result.advantage, expected.advantage)
        np.testing.assert_array_equal(result.value_target, expected.value_target)
        compact = await client.compute_advantage(estimator=estimator, form="compact", **arrays)
        np.testing.assert_allclose(compact.advantage, expected.advantage, rtol=1e-6, atol=1e-6)
        td = await client.compute_advantage(to_tensordict(batch), estimator=estimator)
        torch.testing.assert_close(
            td["advantage"], torch.from_numpy(np.array(expected.advantage)).unsqueeze(-1)
        )


async def test_concurrent_calls(grpc_target: str) -> None:
    batches = [make_batch(seed=s) for s in range(8)]
    async with AsyncAdvantageClient(grpc_target, timeout=60) as client:
        results = await asyncio.gather(*(client.compute_advantage(**b.arrays()) for b in batches))
        one = await client.compute_advantage(**batches[3].arrays())
    np.testing.assert_array_equal(results[3].advantage, one.advantage)


async def test_errors(grpc_target: str) -> None:
    arrays = make_batch().arrays()
    async with AsyncAdvantageClient(grpc_target, timeout=60) as client:
        with pytest.raises(InvalidArgumentError) as info:
            await client.compute_advantage(**{**arrays, "reward": np.zeros((3, 6), np.int64)})
        assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert "trajectory.reward" in info.value.message
        with pytest.raises(TypeError, match="takes no 'rho_thresh'"):
            await client.compute_advantage(rho_thresh=2.0, **arrays)
        big = make_batch(batch_shape=(128,), steps=512).arrays()
        with pytest.raises(DeadlineExceededError) as deadline:
            await client.compute_advantage(timeout=0.005, **big)
        assert deadline.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
        # the channel is still usable afterwards
        assert (await client.compute_advantage(**arrays)).advantage.shape == (3, 6)


# ---- losses and parameters -----------------------------------------------------------------------


async def test_compute_loss_same_as_the_sync_client(grpc_target: str) -> None:
    batch = make_batch(seed=12)
    arrays = batch.arrays(with_vtrace=True)
    td = to_tensordict(batch)
    td["logits"] = torch.zeros(3, 6, 2)
    knobs = {"loss": PPO(entropy_coeff=0.1), "estimator": TDLambda(gamma=0.9)}
    with AdvantageClient(grpc_target, timeout=60) as sync:
        expected = sync.compute_loss(**knobs, **arrays)
        expected_kl = sync.compute_loss(td, loss="ppo_kl")
    async with AsyncAdvantageClient(grpc_target, timeout=60) as client:
        result = await client.compute_loss(**knobs, **arrays)
        assert (result.loss, result.metrics) == (expected.loss, expected.metrics)
        kl = await client.compute_loss(td, loss="ppo_kl")  # reads td["logits"]
        assert (kl.loss, kl.metrics) == (expected_kl.loss, expected_kl.metrics)
        with pytest.raises(TypeError, match="takes no 'dtarg'"):
            await client.compute_loss(dtarg=0.1, **arrays)
        with pytest.raises(InvalidArgumentError) as info:
            await client.compute_loss(**{**arrays, "action": np.zeros((3, 5), np.int64)})
        assert "trajectory.action" in info.value.message


async def test_parameters_and_updates() -> None:
    from service.models.demo import demo_networks
    from tests.support.servers import running_server
    from tests.support.torchrl_reference import sgd_model

    batch = make_batch(seed=13)
    with running_server(models={"demo": sgd_model()}) as server:  # updates: a server of its own
        async with AsyncAdvantageClient(server.target, timeout=60) as client:
            version, before = await client.get_parameters(max_chunk_bytes=100)
            assert version == 0
            for name, value in sync_state(demo_networks()).items():
                np.testing.assert_array_equal(before[name], value)
            step = await client.compute_loss(
                to_tensordict(batch), apply_update=True, expected_parameter_version=0
            )
            assert step.updated and step.new_parameter_version == 1
            with pytest.raises(FailedPreconditionError):
                await client.compute_loss(
                    to_tensordict(batch), apply_update=True, expected_parameter_version=0
                )
            # Put the original parameters back (in small chunks), compare-and-set on version 1.
            assert await client.set_parameters(
                before, expected_version=1, max_chunk_bytes=100
            ) == 2  # fmt: skip
            version, after = await client.get_parameters(as_="torch")
            assert version == 2
            for name, value in before.items():
                np.testing.assert_array_equal(after[name].numpy(), value)
            _, actor = demo_networks()
            torch.nn.init.zeros_(actor[0].weight)
            assert await client.load_into(actor) == 2
            torch.testing.assert_close(actor.state_dict(), demo_networks()[1].state_dict())
            with pytest.raises(InvalidArgumentError) as info:
                await client.set_parameters(
                    {"actor_network.2.bias": np.zeros(2, np.float32),
                     "actor_network.2.weight": np.zeros(3, np.float32)}
                )  # fmt: skip
            assert "shape" in info.value.message
            assert (await client.get_parameters()).version == 2  # nothing applied
            with pytest.raises(NotFoundError):
                await client.get_parameters("nope")
            with pytest.raises(ValueError, match="max_chunk_bytes"):
                await client.set_parameters(before, max_chunk_bytes=0)


def sync_state(networks: tuple[torch.nn.Module, torch.nn.Module]) -> dict[str, np.ndarray]:
    value, actor = networks
    state = {f"value_network.{k}": v.numpy() for k, v in value.state_dict().items()}
    return state | {f"actor_network.{k}": v.numpy() for k, v in actor.state_dict().items()}
