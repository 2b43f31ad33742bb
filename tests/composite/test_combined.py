"""Agents, heads and a mask together: a [B, T, n] multi-agent batch of a two-head policy with
padding equals, number for number, the same data laid out as [B·n, T] rows without agents (each
agent's sequence is a row of its own), for the advantage and for the loss."""

from __future__ import annotations

import pytest
import torch

from service.pb.advantage.v1 import advantage_pb2 as pb
from tests.support import composite as C
from tests.support.servers import running_server
from tests.support.wire import array, stub, tensor

B, T, N = 2, 5, 3


def _agents_first(x: torch.Tensor) -> torch.Tensor:
    """[B, T, n, ...] → [B·n, T, ...]."""
    return x.movedim(2, 1).reshape(B * N, T, *x.shape[3:]).contiguous()


def test_agents_heads_and_mask_equal_rows_of_their_own() -> None:
    data = C.make_data((B, N), steps=T, seed=4)  # [B, n, T, ...]; moved to [B, T, n, ...] below
    wire = C.Data(**{k: v.movedim(1, 2).contiguous() for k, v in data.__dict__.items()})
    done = wire.done[:, :, 0].clone()  # shared by the agents
    terminated = done & wire.terminated[:, :, 0]
    mask = torch.arange(T).expand(B, T) < torch.tensor([[T], [3]])
    agents = C.trajectory(wire, per_head=True, mask=mask)
    agents.n_agents = N
    agents.done.CopyFrom(tensor(done))
    agents.terminated.CopyFrom(tensor(terminated))
    rows = C.Data(**{k: _agents_first(v) for k, v in wire.__dict__.items()})
    expand = lambda x: x.unsqueeze(1).expand(B, N, T).reshape(B * N, T)  # noqa: E731
    flat = C.trajectory(rows, per_head=True, mask=expand(mask))
    flat.done.CopyFrom(tensor(expand(done)))
    flat.terminated.CopyFrom(tensor(expand(terminated)))
    with running_server(models={"two_heads": C.model(seed=9)}) as server:
        api = stub(server.target)
        by_agent = api.ComputeAdvantage(
            pb.ComputeAdvantageRequest(model_name="two_heads", trajectory=agents), timeout=60
        )
        by_row = api.ComputeAdvantage(
            pb.ComputeAdvantageRequest(model_name="two_heads", trajectory=flat), timeout=60
        )
        torch.manual_seed(1)
        loss_agents = api.ComputeLoss(
            pb.ComputeLossRequest(model_name="two_heads", trajectory=agents), timeout=60
        )
        torch.manual_seed(1)
        loss_rows = api.ComputeLoss(
            pb.ComputeLossRequest(model_name="two_heads", trajectory=flat), timeout=60
        )
    assert list(by_agent.advantage.shape) == [B, T, N]
    torch.testing.assert_close(_agents_first(array(by_agent.advantage)), array(by_row.advantage))
    assert bool((array(by_agent.advantage)[1, 3:] == 0).all())
    assert set(loss_agents.metrics) == set(loss_rows.metrics)
    for key, value in loss_rows.metrics.items():
        assert loss_agents.metrics[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key
