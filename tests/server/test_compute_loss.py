"""ComputeLoss over a real server: TorchRL's numbers and gradients, updates, versions."""

from __future__ import annotations

import threading

import grpc
import pytest
import torch

from service.models.demo import demo_manifest, demo_networks
from service.models.model import Model
from service.pb.advantage.v1 import advantage_pb2 as pb
from tests.support.servers import running_server
from tests.support.torchrl_reference import (
    LR,
    as_tensordict,
    sgd_model,
    torchrl_loss,
)
from tests.support.wire import full_trajectory, parameters, random_batch, rpc_error, stub, tensor


@pytest.fixture()
def sgd_server():
    with running_server(models={"demo": sgd_model()}) as server:
        yield server


LOSSES = {
    "ppo_clip": pb.ClipPPOLoss(),
    "ppo": pb.PPOLoss(),
    "a2c": pb.A2CLoss(),
    "reinforce": pb.ReinforceLoss(),
}


@pytest.mark.parametrize("name", list(LOSSES))
def test_loss_and_gradients_match_torchrl(sgd_server, name: str) -> None:
    api = stub(sgd_server.target)
    batch = random_batch((4,), steps=16, seed=21)
    version, before = parameters(api)
    response = api.ComputeLoss(
        pb.ComputeLossRequest(
            trajectory=full_trajectory(batch), apply_update=True, **{name: LOSSES[name]}
        )
    )
    assert response.updated and response.new_parameter_version == version + 1

    loss, value, actor = torchrl_loss(name)
    data = as_tensordict(batch)
    out = loss(data)  # TorchRL computes its default GAE(0.99, 0.95) itself
    total = sum(v for k, v in out.items() if k.startswith("loss_"))
    for key in ("loss_objective", "loss_critic", "loss_entropy", "loss_actor", "loss_value"):
        if key in out.keys():  # noqa: SIM118 - a TensorDict iterates rows, not keys
            assert response.metrics[key] == pytest.approx(out[key].item(), rel=1e-5, abs=1e-6)
    for key in ("entropy", "kl_approx", "clip_fraction"):
        if key in out.keys():  # noqa: SIM118 - a TensorDict iterates rows, not keys
            assert response.metrics[key] == pytest.approx(out[key].item(), rel=1e-5, abs=1e-6)
    assert response.loss == pytest.approx(total.item(), rel=1e-5, abs=1e-6)

    total.backward()
    _, after = parameters(api)
    networks = {"value_network.": value.module, "actor_network.": actor.module[0].module}
    for prefix, network in networks.items():
        for key, parameter in network.named_parameters():
            gradient = (before[prefix + key] - after[prefix + key]) / LR
            expected = parameter.grad if parameter.grad is not None else torch.zeros_like(parameter)
            torch.testing.assert_close(gradient, expected, rtol=1e-3, atol=2e-6)


def test_client_advantage_skips_the_estimator(grpc_target: str) -> None:
    batch = random_batch((2,), steps=8, seed=5)
    advantage = torch.randn(2, 8, generator=torch.Generator().manual_seed(0))
    value_target = torch.randn(2, 8, generator=torch.Generator().manual_seed(1))
    response = stub(grpc_target).ComputeLoss(
        pb.ComputeLossRequest(
            trajectory=full_trajectory(batch),
            advantage=tensor(advantage),
            value_target=tensor(value_target),
            a2c=pb.A2CLoss(),
        )
    )
    loss, _, _ = torchrl_loss("a2c")
    data = as_tensordict(batch)
    data["advantage"] = advantage.unsqueeze(-1)
    data["value_target"] = value_target.unsqueeze(-1)
    out = loss(data)
    assert response.metrics["loss_objective"] == pytest.approx(
        out["loss_objective"].item(), rel=1e-5
    )
    assert response.metrics["loss_critic"] == pytest.approx(out["loss_critic"].item(), rel=1e-5)
    assert not response.updated and response.new_parameter_version == response.parameter_version


def test_kl_penalty_beta_is_server_state_that_adapts_only_on_updates(sgd_server) -> None:
    api = stub(sgd_server.target)
    batch = random_batch((4,), steps=16, seed=8)
    g = torch.Generator().manual_seed(3)
    behaviour_logits = torch.randn(4, 16, 2, generator=g) * 3  # far from the policy: KL ≫ dtarg

    def call(update: bool) -> pb.ComputeLossResponse:
        request = pb.ComputeLossRequest(
            trajectory=full_trajectory(batch), ppo_kl=pb.KLPENPPOLoss(), apply_update=update
        )
        request.behaviour_distribution["logits"].CopyFrom(tensor(behaviour_logits))
        return api.ComputeLoss(request)

    assert call(False).metrics["beta"] == 2.0  # the would-be new β: ×2 above 1.5·dtarg
    assert call(False).metrics["beta"] == 2.0  # β itself (1.0) unchanged without an update
    assert call(True).metrics["beta"] == 2.0
    assert call(False).metrics["beta"] == 4.0  # the server kept β = 2 after the update


def test_impala_loss_is_reported(grpc_target: str) -> None:
    batch = random_batch((3,), steps=12, seed=4)
    response = stub(grpc_target).ComputeLoss(
        pb.ComputeLossRequest(
            trajectory=full_trajectory(batch), impala=pb.ImpalaLoss(lmbda=0.95, critic_coeff=0.5)
        )
    )
    for key in ("loss_objective", "loss_critic", "loss_entropy", "entropy"):
        assert key in response.metrics
    total = sum(v for k, v in response.metrics.items() if k.startswith("loss_"))
    assert response.loss == pytest.approx(total, rel=1e-6)


def test_loss_errors(grpc_target: str) -> None:
    api = stub(grpc_target)
    batch = random_batch((2,), steps=6, seed=1)
    no_behaviour = full_trajectory(batch)
    no_behaviour.ClearField("sample_log_prob")
    cases = [
        (pb.ComputeLossRequest(trajectory=no_behaviour), grpc.StatusCode.INVALID_ARGUMENT,
         "trajectory.sample_log_prob"),
        (pb.ComputeLossRequest(trajectory=full_trajectory(batch), ppo_kl=pb.KLPENPPOLoss()),
         grpc.StatusCode.INVALID_ARGUMENT, "behaviour_distribution"),
        (pb.ComputeLossRequest(trajectory=full_trajectory(batch), apply_update=True,
                               expected_parameter_version=99),
         grpc.StatusCode.FAILED_PRECONDITION, "expected_parameter_version"),
        (pb.ComputeLossRequest(trajectory=full_trajectory(batch),
                               advantage=tensor(torch.zeros(2, 6))),
         grpc.StatusCode.INVALID_ARGUMENT, "advantage / value_target"),
        (pb.ComputeLossRequest(trajectory=full_trajectory(batch),
                               ppo_clip=pb.ClipPPOLoss(clip_epsilon=-1.0)),
         grpc.StatusCode.INVALID_ARGUMENT, "ppo_clip.clip_epsilon"),
        (pb.ComputeLossRequest(trajectory=full_trajectory(batch),
                               impala=pb.ImpalaLoss(gamma=1.5)),
         grpc.StatusCode.INVALID_ARGUMENT, "impala.gamma"),
    ]  # fmt: skip
    for request, code, words in cases:
        error = rpc_error(api.ComputeLoss, request)
        assert error.code() == code and words in error.details(), error.details()
    assert api.GetModel(pb.GetModelRequest()).model.parameter_version == 0  # nothing applied


def test_value_only_model_cannot_compute_a_loss() -> None:
    value, _ = demo_networks()
    model = Model(demo_manifest(), torch.device("cpu"), value_network=value)
    with running_server(models={"demo": model}) as server:
        error = rpc_error(
            stub(server.target).ComputeLoss,
            pb.ComputeLossRequest(trajectory=full_trajectory(random_batch())),
        )
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "actor network" in error.details()


def test_get_parameters_chunks_large_tensors_and_filters_by_prefix(grpc_target: str) -> None:
    api = stub(grpc_target)
    chunks = list(api.GetParameters(pb.GetParametersRequest(max_chunk_bytes=256)))
    assert len(chunks) > 10
    assert all(sum(len(t.data.raw_data) for t in c.tensors) <= 256 for c in chunks)
    _, whole = parameters(api)
    _, pieces = parameters(api, max_chunk_bytes=256)
    value, actor = demo_networks()
    expected = {f"value_network.{k}": v for k, v in value.state_dict().items()}
    expected |= {f"actor_network.{k}": v for k, v in actor.state_dict().items()}
    assert sorted(whole) == sorted(expected)
    for key, tensor_ in expected.items():
        torch.testing.assert_close(whole[key], tensor_, rtol=0, atol=0)
        torch.testing.assert_close(pieces[key], tensor_, rtol=0, atol=0)
    _, actor_only = parameters(api, prefixes=["actor_network."])
    assert sorted(actor_only) == sorted(k for k in expected if k.startswith("actor_network."))


def chunk(name: str, value: torch.Tensor, **extra) -> pb.ParameterChunk:
    return pb.ParameterChunk(
        tensors=[
            pb.NamedTensor(name=name, shape=list(value.shape), data=tensor(value.reshape(-1)))
        ],
        **extra,
    )


def test_set_parameters_is_all_or_nothing(sgd_server) -> None:
    api = stub(sgd_server.target)
    version, before = parameters(api)
    good = torch.full((2,), 0.25)
    bad_streams = {
        "shape": [
            chunk("actor_network.2.bias", good),
            chunk("actor_network.2.weight", torch.ones(3)),
        ],
        "name": [chunk("actor_network.2.bias", good), chunk("actor_network.9.bias", good)],
        "dtype": [
            chunk("actor_network.2.bias", good),
            chunk("actor_network.0.bias", torch.ones(64, dtype=torch.float64)),
        ],
        "version": [chunk("actor_network.2.bias", good, parameter_version=version + 5)],
    }
    for what, stream in bad_streams.items():
        error = rpc_error(api.SetParameters, iter(stream))
        expected = (
            grpc.StatusCode.FAILED_PRECONDITION
            if what == "version"
            else (grpc.StatusCode.INVALID_ARGUMENT)
        )
        assert error.code() == expected, (what, error.details())
        assert parameters(api)[0] == version
        torch.testing.assert_close(
            parameters(api)[1]["actor_network.2.bias"], before["actor_network.2.bias"]
        )
    response = api.SetParameters(iter([chunk("actor_network.2.bias", good, model_name="demo")]))
    assert (response.parameter_version, response.tensors_updated) == (version + 1, 1)
    new_version, after = parameters(api)
    assert new_version == version + 1
    torch.testing.assert_close(after["actor_network.2.bias"], good)


def test_concurrent_updates_and_advantages_report_consistent_versions(sgd_server) -> None:
    api = stub(sgd_server.target)
    batch = random_batch((2,), steps=8, seed=13)
    snapshots: dict[int, dict[str, torch.Tensor]] = dict([parameters(api)])
    answers: list[pb.ComputeAdvantageResponse] = []
    stop = threading.Event()

    def ask() -> None:
        while not stop.is_set():
            answers.append(
                api.ComputeAdvantage(pb.ComputeAdvantageRequest(trajectory=full_trajectory(batch)))
            )

    askers = [threading.Thread(target=ask) for _ in range(3)]
    for thread in askers:
        thread.start()
    for _ in range(6):
        api.ComputeLoss(pb.ComputeLossRequest(trajectory=full_trajectory(batch), apply_update=True))
        version, values = parameters(api)  # only this thread updates: version ↔ parameters
        snapshots[version] = values
    stop.set()
    for thread in askers:
        thread.join()
    seen = {answer.parameter_version for answer in answers}
    assert len(seen) >= 2, seen  # the askers really overlapped the updates
    value_net, _ = demo_networks()
    for answer in answers:
        state = {
            k.removeprefix("value_network."): v
            for k, v in snapshots[answer.parameter_version].items()
            if k.startswith("value_network.")
        }
        value_net.load_state_dict(state)
        with torch.no_grad():
            expected = value_net(batch.observation).squeeze(-1)
        got = torch.frombuffer(bytearray(answer.state_value.raw_data), dtype=torch.float32)
        torch.testing.assert_close(got.view(2, 8), expected)


def test_set_parameters_refuses_a_stream_larger_than_twice_the_model(sgd_server) -> None:
    api = stub(sgd_server.target)
    version, before = parameters(api)
    weight = torch.zeros(64, 64)
    stream = (chunk("value_network.2.weight", weight, model_name="demo") for _ in range(100))
    error = rpc_error(api.SetParameters, stream)
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "twice the size" in error.details()
    after_version, after = parameters(api)
    assert after_version == version
    torch.testing.assert_close(after["value_network.2.weight"], before["value_network.2.weight"])
