"""DreamerV3 over gRPC with the Python client against a real server (the built-in
`dreamer-demo` model): the answers, the update's bookkeeping, and bad input."""

from __future__ import annotations

import numpy as np
import pytest
from advantage_client import (
    AdvantageClient,
    DreamerImagination,
    DreamerV3,
    DreamerV3Actor,
    DreamerV3Model,
    DreamerV3Value,
    FailedPreconditionError,
    InvalidArgumentError,
    ResourceExhaustedError,
)

from service.settings import Settings
from tests.support.servers import running_server

MODEL = "dreamer-demo"
B, T = 3, 6


def _replay(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    is_first = np.zeros((B, T), dtype=bool)
    is_first[:, 0] = True
    return {
        "observation": rng.normal(size=(B, T, 3)).astype(np.float32),
        "action": rng.uniform(-1, 1, size=(B, T, 1)).astype(np.float32),
        "reward": rng.normal(size=(B, T)).astype(np.float32),
        "is_first": is_first,
    }


def _latents(rows: int = 4) -> dict[str, np.ndarray]:
    state = np.zeros((rows, 16), dtype=np.float32)
    state[:, ::4] = 1.0  # one class of each of the 4 categoricals
    return {"state": state, "belief": np.zeros((rows, 16), dtype=np.float32)}


@pytest.fixture(scope="module")
def client():
    with (
        running_server(Settings(max_imagination_steps=32, dreamer_demo=True)) as server,
        AdvantageClient(server.target, timeout=60) as connected,
    ):
        yield connected


def test_one_learner_step_updates_once_and_reports_torchrls_names(client) -> None:
    before = client.get_model(MODEL).parameter_version
    step = client.dreamer_loss(
        DreamerV3(actor=DreamerV3Actor(imagination=DreamerImagination(imagination_horizon=4))),
        model=MODEL,
        replay=_replay(),
        apply_update=True,
        return_posterior=True,
    )
    assert step.updated and step.parameter_version == before
    assert step.new_parameter_version == before + 1
    for name in (
        "loss_model_kl",
        "loss_model_reco",
        "loss_model_reward",
        "loss_model_continue",
        "loss_actor",
        "actor_entropy",
        "loss_value",
        "return_low",
        "return_high",
        "return_scale",
        "lambda_return_mean",
        "grad_norm_actor",
        "grad_norm_critic",
        "grad_norm_world_model",
    ):
        assert name in step.metrics, name
    total = sum(v for k, v in step.metrics.items() if k.startswith("loss_"))
    assert step.loss == pytest.approx(total, rel=1e-5)
    assert step.posterior_latents["state"].shape == (B, T, 16)
    assert step.posterior_latents["belief"].shape == (B, T, 16)
    # Each state row is one-hot per categorical (4 × 4).
    assert np.allclose(step.posterior_latents["state"].reshape(B, T, 4, 4).sum(-1), 1.0)


def test_actor_and_value_from_starting_latents_and_model_alone(client) -> None:
    version = client.get_model(MODEL).parameter_version
    actor = client.dreamer_loss(DreamerV3Actor(), model=MODEL, starting_latents=_latents())
    value = client.dreamer_loss(
        DreamerV3Value(value_loss="symlog_mse", slow_critic_regularization=1.0),
        model=MODEL,
        starting_latents=_latents(),
    )
    world = client.dreamer_loss(DreamerV3Model(kl_mode="separate"), model=MODEL, replay=_replay())
    assert "loss_actor" in actor.metrics and "loss_value" not in actor.metrics
    assert "loss_value" in value.metrics and "loss_actor" not in value.metrics
    assert {"loss_model_dynamic", "loss_model_representation"} <= set(world.metrics)
    assert not (actor.updated or value.updated or world.updated)
    assert client.get_model(MODEL).parameter_version == version


def test_client_side_imagination_form(client) -> None:
    rng = np.random.default_rng(1)
    latents = _latents(2 * 5)
    imagined = {
        "state": latents["state"].reshape(2, 5, 16),
        "belief": rng.normal(size=(2, 5, 16)).astype(np.float32),
        "action": rng.uniform(-1, 1, size=(2, 4, 1)).astype(np.float32),
        "reward": rng.normal(size=(2, 4)).astype(np.float32),
        "continuation": np.full((2, 5), 0.9, dtype=np.float32),
    }
    out = client.dreamer_loss(
        DreamerV3Actor(use_reinforce=True), model=MODEL, imagined=imagined, apply_update=True
    )
    assert out.updated and np.isfinite(out.loss)
    with pytest.raises(FailedPreconditionError, match=r"use_reinforce"):
        client.dreamer_loss(DreamerV3Actor(), model=MODEL, imagined=imagined, apply_update=True)


def test_horizon_zero_is_invalid_and_above_the_limit_exhausts(client) -> None:
    with pytest.raises(InvalidArgumentError, match=r"imagination_horizon"):
        client.dreamer_loss(
            DreamerV3Actor(imagination=DreamerImagination(imagination_horizon=0)),
            model=MODEL,
            starting_latents=_latents(),
        )
    with pytest.raises(ResourceExhaustedError, match=r"33 steps.*limit of 32"):
        client.dreamer_loss(
            DreamerV3Actor(imagination=DreamerImagination(imagination_horizon=33)),
            model=MODEL,
            starting_latents=_latents(),
        )


def test_a_model_without_world_model_is_a_failed_precondition(client) -> None:
    with pytest.raises(FailedPreconditionError, match=r"world_model section"):
        client.dreamer_loss(DreamerV3Actor(), model="demo", starting_latents=_latents())


_F32, _I64 = np.float32, np.int64


@pytest.mark.parametrize(
    ("latents", "match"),
    [
        (
            {"state": np.zeros((4, 15), _F32), "belief": np.zeros((4, 16), _F32)},
            r"starting_latents\['state'\]: expected shape \[\*B, 16\], got \[4, 15\]",
        ),
        (
            {"state": np.zeros((4, 16), _F32), "belief": np.zeros((3, 16), _F32)},
            r"starting_latents\['belief'\]: expected shape \[4, 16\], got \[3, 16\]",
        ),
        (
            {"state": np.zeros((4, 16), _F32)},
            r"starting_latents: expected the latents \['belief', 'state'\]",
        ),
        (
            {"state": np.zeros((4, 16), _I64), "belief": np.zeros((4, 16), _F32)},
            r"starting_latents\['state'\]: expected a floating dtype, got int64",
        ),
    ],
)
def test_wrong_latent_shapes_name_the_field(client, latents, match) -> None:
    with pytest.raises(InvalidArgumentError, match=match):
        client.dreamer_loss(DreamerV3Actor(), model=MODEL, starting_latents=latents)


def test_nan_latents_and_nan_replay_are_refused_and_change_nothing(client) -> None:
    version = client.get_model(MODEL).parameter_version
    latents = _latents()
    latents["belief"][1, 3] = np.nan
    with pytest.raises(InvalidArgumentError, match=r"starting_latents\['belief'\].*NaN"):
        client.dreamer_loss(
            DreamerV3Actor(), model=MODEL, starting_latents=latents, apply_update=True
        )
    replay = _replay()
    replay["observation"][0, 2, 1] = np.inf
    with pytest.raises(InvalidArgumentError, match=r"replay\.observation"):
        client.dreamer_loss(DreamerV3(), model=MODEL, replay=replay, apply_update=True)
    replay = _replay()
    replay["is_first"] = replay["is_first"][:, :-1]
    with pytest.raises(InvalidArgumentError, match=r"replay\.is_first"):
        client.dreamer_loss(DreamerV3(), model=MODEL, replay=replay, apply_update=True)
    assert client.get_model(MODEL).parameter_version == version


def test_knob_out_of_range_names_the_knob(client) -> None:
    with pytest.raises(InvalidArgumentError, match=r"dreamer_v3\.model\.kl_alpha"):
        client.dreamer_loss(
            DreamerV3(model=DreamerV3Model(kl_alpha=1.5)), model=MODEL, replay=_replay()
        )
    with pytest.raises(InvalidArgumentError, match=r"starting_latents.*imagined|exactly one"):
        client.dreamer_loss(DreamerV3Actor(), model=MODEL)


def test_get_model_describes_the_world_model() -> None:
    import grpc

    from service.pb.advantage.v1 import advantage_pb2 as pb
    from service.pb.advantage.v1 import advantage_pb2_grpc as pb_grpc

    with (
        running_server(Settings(dreamer_demo=True)) as server,
        grpc.insecure_channel(server.target) as channel,
    ):
        stub = pb_grpc.AdvantageServiceStub(channel)
        info = stub.GetModel(pb.GetModelRequest(model_name=MODEL), timeout=30).model
        plain = stub.GetModel(pb.GetModelRequest(model_name="demo"), timeout=30).model
    world = info.world_model
    assert [(s.name, list(s.shape)) for s in world.latents] == [("state", [16]), ("belief", [16])]
    assert [(s.name, list(s.shape)) for s in world.observations] == [("observation", [3])]
    assert (world.num_categoricals, world.num_classes, world.action_size) == (4, 4, 1)
    assert world.reward_bins == 255
    assert list(world.networks) == [
        "continue",
        "decoder",
        "encoder",
        "posterior",
        "prior",
        "reward",
    ]
    assert dict(world.learning_rates) == pytest.approx(
        {"actor": 3e-5, "critic": 3e-5, "world_model": 1e-4}
    )
    assert not plain.HasField("world_model")
