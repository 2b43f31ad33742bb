"""get_parameters / set_parameters / load_into against real servers. Reads use the shared demo
server; anything that sets parameters runs on a server of its own."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch
from advantage_client import (
    AdvantageClient,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    Parameters,
)
from advantage_client._parameters import set_parameters_stream

from service.models.demo import demo_networks
from service.pb.advantage.v1 import advantage_pb2 as spb
from tests.support.servers import running_server
from tests.support.torchrl_reference import sgd_model
from tests.support.wire import parameters as raw_parameters
from tests.support.wire import stub


def demo_state() -> dict[str, torch.Tensor]:
    value, actor = demo_networks()
    state = {f"value_network.{k}": v for k, v in value.state_dict().items()}
    return state | {f"actor_network.{k}": v for k, v in actor.state_dict().items()}


@pytest.fixture
def client(grpc_target: str) -> Iterator[AdvantageClient]:
    with AdvantageClient(grpc_target, timeout=60) as c:
        yield c


@pytest.fixture
def own() -> Iterator[AdvantageClient]:
    """A client of a server of its own, whose parameters the test may change."""
    with (
        running_server(models={"demo": sgd_model()}) as server,
        AdvantageClient(server.target, timeout=60) as c,
    ):
        yield c


# ---- get -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("max_chunk_bytes", [0, 64, 1000])
def test_get_parameters_equals_the_networks(client: AdvantageClient, max_chunk_bytes: int) -> None:
    expected = demo_state()
    result = client.get_parameters(max_chunk_bytes=max_chunk_bytes)
    assert isinstance(result, Parameters)
    version, arrays = result
    assert version == client.get_model().parameter_version == 0
    assert list(arrays) == list(expected)  # the server's (state_dict) order
    for name, value in expected.items():
        assert isinstance(arrays[name], np.ndarray) and arrays[name].flags.writeable
        np.testing.assert_array_equal(arrays[name], value.numpy(), err_msg=name)
    tensors = client.get_parameters(as_="torch", max_chunk_bytes=max_chunk_bytes).tensors
    for name, value in expected.items():
        torch.testing.assert_close(tensors[name], value, rtol=0, atol=0)


def test_small_chunks_really_stream_in_pieces(client: AdvantageClient, grpc_target: str) -> None:
    raw = list(stub(grpc_target).GetParameters(spb.GetParametersRequest(max_chunk_bytes=64)))
    assert len(raw) > 100  # the 64×64 weight alone is 16 KiB
    _, whole = raw_parameters(stub(grpc_target))
    _, pieces = client.get_parameters(as_="torch", max_chunk_bytes=64)
    for name, value in whole.items():
        torch.testing.assert_close(pieces[name], value, rtol=0, atol=0)


def test_prefixes(client: AdvantageClient) -> None:
    actor = client.get_parameters(prefixes="actor_network.").tensors  # one string: one prefix
    assert list(actor) == [k for k in demo_state() if k.startswith("actor_network.")]
    both = client.get_parameters(prefixes=["actor_network.2.", "value_network.4."]).tensors
    expected = ["actor_network.2.weight", "actor_network.2.bias"]
    expected += ["value_network.4.weight", "value_network.4.bias"]
    assert sorted(both) == sorted(expected)
    assert client.get_parameters(prefixes=["nothing."]) == (0, {})


def test_unknown_model_is_not_found(client: AdvantageClient) -> None:
    with pytest.raises(NotFoundError) as info:
        client.get_parameters("nope")
    assert "nope" in info.value.message
    with pytest.raises(NotFoundError):
        client.set_parameters({"actor_network.2.bias": np.zeros(2, np.float32)}, model="nope")


def test_load_into_a_local_module(client: AdvantageClient) -> None:
    _, actor = demo_networks()
    torch.nn.init.zeros_(actor[0].weight)
    assert client.load_into(actor) == 0
    torch.testing.assert_close(actor.state_dict(), demo_networks()[1].state_dict())
    value, _ = demo_networks()
    with torch.no_grad():
        value[0].bias.add_(1.0)
    client.load_into(value, prefix="value_network.")
    torch.testing.assert_close(value[0].bias, demo_networks()[0][0].bias)
    with pytest.raises(ValueError, match="no parameters named"):
        client.load_into(actor, prefix="critic.")
    with pytest.raises(RuntimeError, match="Missing key"):
        client.load_into(torch.nn.Sequential(torch.nn.Linear(4, 64), torch.nn.Linear(64, 64)))


# ---- set (own server) ----------------------------------------------------------------------------


@pytest.mark.parametrize("max_chunk_bytes", [40, 1 << 20])
def test_set_get_round_trip(own: AdvantageClient, max_chunk_bytes: int) -> None:
    rng = np.random.default_rng(0)
    version, before = own.get_parameters()
    new = {name: rng.normal(size=value.shape).astype(np.float32) for name, value in before.items()}
    stream = list(set_parameters_stream(new, max_chunk_bytes=max_chunk_bytes))
    assert len(stream) > 100 if max_chunk_bytes == 40 else len(stream) == 1
    assert own.set_parameters(new, max_chunk_bytes=max_chunk_bytes) == version + 1
    got_version, got = own.get_parameters(max_chunk_bytes=max_chunk_bytes)
    assert got_version == version + 1 == own.get_model().parameter_version
    for name, value in new.items():
        np.testing.assert_array_equal(got[name], value, err_msg=name)


def test_set_a_state_dict_with_a_prefix_and_compare_and_set(own: AdvantageClient) -> None:
    local = torch.nn.Sequential(torch.nn.Linear(4, 64), torch.nn.Tanh(), torch.nn.Linear(64, 2))
    with pytest.raises(FailedPreconditionError) as info:
        own.set_parameters(local.state_dict(), prefix="actor_network.", expected_version=3)
    assert "parameter_version" in info.value.message
    version = own.set_parameters(local.state_dict(), prefix="actor_network.", expected_version=0)
    assert version == 1
    mirror = demo_networks()[1]
    assert own.load_into(mirror) == 1
    torch.testing.assert_close(mirror.state_dict(), local.state_dict())
    # The value network was left alone.
    value = own.get_parameters(prefixes="value_network.", as_="torch").tensors
    torch.testing.assert_close(value["value_network.0.bias"], demo_networks()[0][0].bias.detach())
    # The server now acts with the new actor: the loss's entropy follows it.
    obs = torch.randn(2, 5, 4, generator=torch.Generator().manual_seed(0))
    ends = torch.zeros(2, 5, dtype=torch.bool)
    result = own.compute_loss(
        loss="a2c", reward=torch.zeros(2, 5), done=ends, observation=obs, next_observation=obs,
        action=torch.zeros(2, 5, dtype=torch.long),
    )  # fmt: skip
    with torch.no_grad():
        expected = torch.distributions.Categorical(logits=local(obs)).entropy().mean()
    assert result.metrics["entropy"] == pytest.approx(float(expected), rel=1e-5)


@pytest.mark.parametrize(
    ("bad", "words"),
    [
        ({"actor_network.2.weight": np.ones(3, np.float32)}, "shape"),  # wrong shape
        ({"actor_network.0.bias": np.ones(64, np.float64)}, "dtype"),  # wrong dtype
        ({"actor_network.9.bias": np.ones(2, np.float32)}, "unknown names"),  # wrong name
    ],
)
def test_a_bad_tensor_anywhere_applies_nothing(
    own: AdvantageClient, bad: dict[str, Any], words: str
) -> None:
    version, before = own.get_parameters()
    good = {
        "actor_network.2.bias": np.full(2, 0.25, np.float32),
        "value_network.2.weight": np.zeros((64, 64), np.float32),  # 16 KiB: many chunks
    }
    with pytest.raises(InvalidArgumentError) as info:
        own.set_parameters({**good, **bad}, max_chunk_bytes=1024)
    assert words in info.value.message
    assert isinstance(info.value, ValueError)
    after_version, after = own.get_parameters()
    assert after_version == version
    for name, value in before.items():
        np.testing.assert_array_equal(after[name], value, err_msg=name)
