"""The asyncio twin against the real demo server."""

from __future__ import annotations

import asyncio

import grpc
import numpy as np
import pytest
import torch
from _client_data import make_batch, to_tensordict
from advantage_client import (
    AdvantageClient,
    AsyncAdvantageClient,
    DeadlineExceededError,
    InvalidArgumentError,
    NotFoundError,
)


async def test_models(grpc_target: str) -> None:
    async with AsyncAdvantageClient(grpc_target, timeout=60) as client:
        models = await client.list_models()
        assert [m.name for m in models] == ["demo"]
        assert await client.get_model() == models[0]
        with pytest.raises(NotFoundError) as info:
            await client.get_model("nope")
        assert info.value.code == grpc.StatusCode.NOT_FOUND and "nope" in info.value.message


@pytest.mark.parametrize("estimator", ["gae", "td_lambda", "vtrace"])
async def test_same_results_as_the_sync_client(grpc_target: str, estimator: str) -> None:
    batch = make_batch(seed=11)
    arrays = batch.arrays(with_vtrace=estimator == "vtrace")
    with AdvantageClient(grpc_target, timeout=60) as sync:
        expected = sync.compute_advantage(estimator=estimator, gamma=0.9, **arrays)
    async with AsyncAdvantageClient(grpc_target, timeout=60) as client:
        result = await client.compute_advantage(estimator=estimator, gamma=0.9, **arrays)
        np.testing.assert_array_equal(result.advantage, expected.advantage)
        np.testing.assert_array_equal(result.value_target, expected.value_target)
        compact = await client.compute_advantage(
            estimator=estimator, gamma=0.9, form="compact", **arrays
        )
        np.testing.assert_allclose(compact.advantage, expected.advantage, rtol=1e-6, atol=1e-6)
        td = await client.compute_advantage(to_tensordict(batch), estimator=estimator, gamma=0.9)
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
