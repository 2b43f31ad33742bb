"""The public calls: one way in for the knobs (and the deprecated keywords), the same requests from
the sync and the asyncio client, and TorchRL's [*B, T, 1] per-step layout (torchrl_shapes)."""

from __future__ import annotations

import inspect
import re
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch
from advantage_client import (
    A2C,
    GAE,
    KLPENPPO,
    PPO,
    TD0,
    AdvantageClient,
    AsyncAdvantageClient,
    ClipPPO,
    Impala,
    TDLambda,
    VTrace,
)
from advantage_client._codec import decode_numpy, encode
from advantage_client._loss import prepare_loss
from advantage_client._pb.advantage.v1 import advantage_pb2 as pb
from advantage_client._request import decode_response, prepare
from torchrl.objectives import ValueEstimators

from tests.support.client_data import make_batch, to_tensordict

SHAPE = (3, 6)  # make_batch()'s [B, T]


# ---- a stub that records what a client sends -----------------------------------------------------


def _responses() -> dict[str, Any]:
    advantage = pb.ComputeAdvantageResponse(
        advantage=encode(np.arange(18, dtype=np.float32).reshape(SHAPE)),
        value_target=encode(np.ones(SHAPE, np.float32)),
        model_name="demo",
        parameter_version=3,
    )
    model = pb.ModelInfo(
        name="demo",
        inputs=[pb.TensorSpec(name="observation", shape=[4], dtype=pb.DTYPE_FLOAT32)],
        action=pb.ActionSpec(distribution=pb.DISTRIBUTION_CATEGORICAL, num_actions=2),
    )
    return {
        "ComputeAdvantage": advantage,
        "ComputeLoss": pb.ComputeLossResponse(loss=1.5, metrics={"loss_objective": 1.5}),
        "GetModel": pb.GetModelResponse(model=model),
        "ListModels": pb.ListModelsResponse(models=[model]),
    }


class RecordingStub:
    """Stands in for the generated stub: records every call, answers with canned responses
    (awaitable ones for the asyncio client)."""

    def __init__(self, awaits: bool) -> None:
        self.calls: list[tuple[str, Any, Any, Any]] = []
        self._awaits = awaits
        self._responses = _responses()

    def __getattr__(self, method: str) -> Any:
        def call(request: Any, *, timeout: Any = None, metadata: Any = None) -> Any:
            self.calls.append((method, request, timeout, metadata))
            response = self._responses[method]
            if not self._awaits:
                return response

            async def answer() -> Any:
                return response

            return answer()

        return call


def _td_with_logits() -> Any:
    td = to_tensordict(make_batch())
    td["logits"] = torch.zeros(*SHAPE, 2)
    return td


# (method, positional batch or None, keyword arguments): each client makes every call.
CALLS: list[tuple[str, Any, dict[str, Any]]] = [
    ("compute_advantage", None, make_batch().arrays()),
    ("compute_advantage", None, {"estimator": TDLambda(gamma=0.9, lmbda=0.8),
                                 "form": "compact", "timeout": 5.0, **make_batch().arrays()}),
    ("compute_advantage", None, {"estimator": ValueEstimators.VTrace, "model": "demo",
                                 **make_batch().arrays(with_vtrace=True)}),
    ("compute_advantage", to_tensordict(make_batch()), {"estimator": "td0"}),  # + GetModel
    ("compute_advantage", None, {"torchrl_shapes": True, **{
        k: v[..., None] if k in ("reward", "done", "terminated") else v
        for k, v in make_batch().arrays().items()}}),
    ("compute_loss", None, make_batch().arrays(with_vtrace=True)),
    ("compute_loss", None, {"loss": A2C(entropy_coeff=0.1), "estimator": GAE(gamma=0.5),
                            "apply_update": True, "expected_parameter_version": 3,
                            **make_batch().arrays(with_vtrace=True)}),
    ("compute_loss", _td_with_logits(), {"loss": KLPENPPO(dtarg=0.02)}),  # cached GetModel
    ("list_models", None, {}),
    ("get_model", None, {"timeout": 2.0}),
]  # fmt: skip


async def test_sync_and_async_clients_send_the_same_requests() -> None:
    sync = AdvantageClient("127.0.0.1:1", timeout=7.0, token="t")
    sync._stub = sync_stub = RecordingStub(awaits=False)  # type: ignore[assignment]
    async with AsyncAdvantageClient("127.0.0.1:1", timeout=7.0, token="t") as client:
        client._stub = async_stub = RecordingStub(awaits=True)  # type: ignore[assignment]
        for method, batch, kwargs in CALLS:
            args = () if batch is None else (batch,)
            expected = getattr(sync, method)(*args, **kwargs)
            result = await getattr(client, method)(*args, **kwargs)
            if method == "compute_advantage" and batch is not None:
                torch.testing.assert_close(result["advantage"], expected["advantage"])
            elif method == "compute_advantage":
                np.testing.assert_array_equal(result.advantage, expected.advantage)
            else:
                assert result == expected, method
    sync.close()
    assert [c[0] for c in sync_stub.calls] == [
        "ComputeAdvantage", "ComputeAdvantage", "ComputeAdvantage", "GetModel",
        "ComputeAdvantage", "ComputeAdvantage", "ComputeLoss", "ComputeLoss", "ComputeLoss",
        "ListModels", "GetModel",
    ]  # fmt: skip
    assert sync_stub.calls == async_stub.calls  # method, request, deadline and metadata
    timeouts = [c[2] for c in sync_stub.calls]
    assert timeouts[1] == 5.0 and timeouts[0] == 7.0 and timeouts[-1] == 2.0
    assert sync_stub.calls[0][3] == (("authorization", "Bearer t"),)


def test_the_clients_share_their_methods_and_documentation() -> None:
    for name in ("compute_advantage", "compute_loss", "get_parameters", "set_parameters"):
        blocking = getattr(AdvantageClient, name)
        awaiting = getattr(AsyncAdvantageClient, name)
        assert not inspect.iscoroutinefunction(blocking)
        assert inspect.iscoroutinefunction(awaiting)
        assert blocking.__doc__ == awaiting.__doc__ and len(blocking.__doc__) > 200
        assert inspect.signature(blocking) == inspect.signature(awaiting)
        assert blocking.__name__ == awaiting.__name__ == name
    signature = inspect.signature(AdvantageClient.compute_loss)
    assert signature.parameters["loss"].default == ClipPPO()
    assert signature.parameters["estimator"].default is None
    assert signature.return_annotation == "LossResult"
    assert (
        inspect.signature(AdvantageClient.compute_advantage).parameters["estimator"].default
        == GAE()
    )


# ---- one way in for the knobs --------------------------------------------------------------------


def test_the_estimator_reaches_both_calls_the_same_way() -> None:
    arrays = make_batch().arrays(with_vtrace=True)
    estimator = GAE(gamma=0.5, lmbda=0.7)
    advantage = prepare(estimator=estimator, **arrays).request
    loss = prepare_loss(estimator=estimator, **arrays).request
    assert (
        advantage.gae
        == loss.gae
        == pb.GAE(gamma=pb.Coefficient(scalar=0.5), lmbda=pb.Coefficient(scalar=0.7))
    )


def test_gamma_through_the_estimator_changes_the_loss(grpc_target: str) -> None:
    """compute_loss takes γ where compute_advantage does: in the estimator."""
    batch = make_batch(seed=21)
    arrays = batch.arrays(with_vtrace=True)
    with AdvantageClient(grpc_target, timeout=60) as client:
        estimator = GAE(gamma=0.5, lmbda=0.8)
        advantage = client.compute_advantage(estimator=estimator, **arrays)
        by_estimator = client.compute_loss(loss=PPO(), estimator=estimator, **arrays)
        precomputed = client.compute_loss(
            loss=PPO(),
            advantage=np.array(advantage.advantage),
            value_target=np.array(advantage.value_target),
            **arrays,
        )
        default = client.compute_loss(loss=PPO(), **arrays)  # GAE with the model's γ = 0.99
    assert by_estimator.metrics == pytest.approx(precomputed.metrics, rel=1e-5, abs=1e-6)
    assert by_estimator.loss != pytest.approx(default.loss, rel=1e-3)


def test_unknown_keywords_are_refused() -> None:
    arrays = make_batch().arrays()
    with AdvantageClient("127.0.0.1:1", timeout=0.01) as client:  # nothing there: no RPC
        with pytest.raises(TypeError, match=r"unexpected keyword arguments \['rewards'\]"):
            client.compute_advantage(rewards=arrays.pop("reward"), **arrays)
        with pytest.raises(TypeError, match=r"\['log_prob'\]; the batch's arrays are"):
            client.compute_loss(log_prob=arrays["done"], **make_batch().arrays())


# ---- the deprecated keywords ---------------------------------------------------------------------


def _sent(client: AdvantageClient, method: str, *args: Any, **kwargs: Any) -> Any:
    client._stub = stub = RecordingStub(awaits=False)  # type: ignore[assignment]
    getattr(client, method)(*args, **kwargs)
    return stub.calls[-1][1]


@pytest.fixture
def offline() -> Iterator[AdvantageClient]:
    with AdvantageClient("127.0.0.1:1") as client:
        yield client


@pytest.mark.parametrize(
    ("keywords", "options", "advice"),
    [
        ({"gamma": 0.9, "lmbda": 0.8}, GAE(gamma=0.9, lmbda=0.8), r"GAE\(gamma=..., lmbda=...\)"),
        ({"estimator": "td_lambda", "gamma": 0.9, "average_rewards": True},
         TDLambda(gamma=0.9, average_rewards=True), r"TDLambda\(gamma=..., average_rewards="),
        ({"estimator": ValueEstimators.VTrace, "rho_thresh": 2.0, "gamma": None},
         VTrace(rho_thresh=2.0), r"estimator=VTrace\(rho_thresh=...\)"),
        ({"estimator": GAE(), "average_gae": True}, GAE(average_gae=True), r"GAE\(average_gae"),
    ],
)  # fmt: skip
def test_deprecated_advantage_keywords_warn_and_send_the_same_request(
    offline: AdvantageClient, keywords: dict[str, Any], options: Any, advice: str
) -> None:
    arrays = make_batch().arrays(with_vtrace=True)
    with pytest.warns(DeprecationWarning, match="compute_advantage.* is deprecated") as record:
        old = _sent(offline, "compute_advantage", **keywords, **arrays)
    assert len(record) == 1 and record[0].filename == __file__  # the caller's line
    assert re.search(advice, str(record[0].message))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        new = _sent(offline, "compute_advantage", estimator=options, **arrays)
    assert old.SerializeToString(deterministic=True) == new.SerializeToString(deterministic=True)


def test_deprecated_advice_names_the_option_object(offline: AdvantageClient) -> None:
    arrays = make_batch().arrays()
    with pytest.warns(DeprecationWarning, match=r"pass estimator=TD0\(gamma=\.\.\.\)"):
        _sent(offline, "compute_advantage", estimator="td0", gamma=0.5, **arrays)
    with pytest.warns(
        DeprecationWarning,
        match=r"pass loss=ClipPPO\(clip_epsilon=\.\.\.\) and estimator=GAE\(lmbda=\.\.\.\)",
    ):
        loss_arrays = make_batch().arrays(with_vtrace=True)
        _sent(offline, "compute_loss", clip_epsilon=0.1, estimator_options={"lmbda": 0.5},
              **loss_arrays)  # fmt: skip


@pytest.mark.parametrize(
    ("keywords", "loss", "estimator"),
    [
        ({"clip_epsilon": (0.1, 0.3), "entropy_coeff": 0.05}, ClipPPO(clip_epsilon=(0.1, 0.3),
         entropy_coeff=0.05), None),
        ({"loss": "a2c", "critic_coeff": 0.5, "estimator": "td0",
          "estimator_options": {"gamma": 0.9}}, A2C(critic_coeff=0.5), TD0(gamma=0.9)),
        ({"estimator_options": {"lmbda": 0.5}}, ClipPPO(), GAE(lmbda=0.5)),
        ({"loss": "impala", "gamma": 0.9, "rho_thresh": 1.2}, Impala(gamma=0.9, rho_thresh=1.2),
         None),
        ({"estimator": "vtrace", "estimator_options": {}}, ClipPPO(), VTrace()),
    ],
)  # fmt: skip
def test_deprecated_loss_keywords_warn_and_send_the_same_request(
    offline: AdvantageClient, keywords: dict[str, Any], loss: Any, estimator: Any
) -> None:
    arrays = make_batch().arrays(with_vtrace=True)
    with pytest.warns(DeprecationWarning, match="compute_loss.* is deprecated") as record:
        old = _sent(offline, "compute_loss", **keywords, **arrays)
    assert record[0].filename == __file__
    new = _sent(offline, "compute_loss", loss=loss, estimator=estimator, **arrays)
    assert old.SerializeToString(deterministic=True) == new.SerializeToString(deterministic=True)


async def test_deprecated_keywords_warn_at_the_callers_line_in_asyncio_too() -> None:
    async with AsyncAdvantageClient("127.0.0.1:1") as client:
        client._stub = stub = RecordingStub(awaits=True)  # type: ignore[assignment]
        with pytest.warns(DeprecationWarning) as record:
            await client.compute_advantage(lmbda=0.5, **make_batch().arrays())
        assert record[0].filename == __file__
        assert stub.calls[0][1].gae == pb.GAE(lmbda=pb.Coefficient(scalar=0.5))


@pytest.mark.parametrize(
    ("method", "keywords", "match"),
    [
        ("compute_advantage", {"estimator": GAE(gamma=0.9), "lmbda": 0.8},
         r"pass lmbda in the option object itself \(GAE\(...\)\)"),
        ("compute_advantage", {"estimator": "td0", "lmbda": 0.8}, "estimator 'td0' takes no"),
        ("compute_loss", {"loss": ClipPPO(clip_epsilon=0.1), "entropy_coeff": 0.1},
         "option object itself"),
        ("compute_loss", {"gamma": 0.9}, r"'ppo_clip' takes no 'gamma' .*estimator=GAE\(gamma"),
    ],
)  # fmt: skip
def test_deprecated_keywords_cannot_be_mixed_or_misplaced(
    offline: AdvantageClient, method: str, keywords: dict[str, Any], match: str
) -> None:
    with pytest.raises(TypeError, match=match):
        getattr(offline, method)(**keywords, **make_batch().arrays(with_vtrace=True))


# ---- TorchRL's [*B, T, 1] ------------------------------------------------------------------------


def _torchrl_shaped(arrays: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    return {k: v[..., None] if k in names else v for k, v in arrays.items()}


PER_STEP = ("reward", "done", "terminated", "sample_log_prob")


@pytest.mark.parametrize("form", ["full", "compact"])
def test_a_torchrl_shaped_reward_is_refused_naming_its_trailing_one(form: str) -> None:
    arrays = _torchrl_shaped(make_batch().arrays(with_vtrace=True), PER_STEP)
    match = (
        r"reward has shape \[3, 6, 1\]: its trailing dimension of size 1 looks like TorchRL's "
        r"feature dimension \(observation\['observation'\] has shape \[3, 6, 4\], so \[\*B, T\] "
        r"is \[3, 6\]\)\. Pass torchrl_shapes=True"
    )
    with pytest.raises(ValueError, match=match):
        prepare(form=form, **arrays)
    with pytest.raises(ValueError, match=match):
        prepare_loss(form=form, **arrays)
    with (
        AdvantageClient("127.0.0.1:1", timeout=0.01) as client,  # refused before sending
        pytest.raises(ValueError, match=match),
    ):
        client.compute_advantage(form=form, **arrays)


def test_the_clue_can_be_another_per_step_array() -> None:
    batch = make_batch()
    arrays = {
        "reward": batch.reward[..., None],
        "done": batch.done,  # [3, 6]: so the reward's 1 is not T
        "state_value": np.zeros((3, 6, 1), np.float32),
        "next_state_value": np.zeros((3, 6, 1), np.float32),
    }
    with pytest.raises(ValueError, match=r"\(done has shape \[3, 6\], so \[\*B, T\] is \[3, 6\]"):
        prepare(**arrays)


@pytest.mark.parametrize("form", ["full", "compact"])
def test_one_step_segments_are_not_mistaken_for_torchrl_shapes(form: str) -> None:
    observation = np.arange(16, dtype=np.float32).reshape(4, 1, 4)
    arrays = {  # segments of one step: reward [4, 1] with T = 1
        "reward": np.ones((4, 1), np.float32),
        "done": np.array([[True], [False], [False], [True]]),
        "observation": observation,
        "next_observation": observation + 100,
    }
    request = prepare(form=form, **arrays).request
    assert list(request.trajectory.reward.shape) == [4, 1]
    observations = request.trajectory.observation["observation"].shape
    assert list(observations) == ([4, 1, 4] if form == "full" else [4, 2, 4])


@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_torchrl_shapes_sends_exactly_the_contract_layout(kind: str) -> None:
    arrays: dict[str, Any] = make_batch().arrays(with_vtrace=True)
    if kind == "torch":
        arrays = {k: torch.from_numpy(v) for k, v in arrays.items()}
    values = {
        "state_value": np.full(SHAPE, 0.5, np.float32),
        "next_state_value": np.full(SHAPE, 0.25, np.float32),
    }
    shaped = _torchrl_shaped({**arrays, **values}, (*PER_STEP, *values))
    gamma = np.full((*SHAPE, 1), 0.9, np.float32)
    request = prepare(estimator=TD0(gamma=gamma), torchrl_shapes=True, **shaped).request
    plain = prepare(estimator=TD0(gamma=gamma[..., 0]), **arrays, **values).request
    assert request.SerializeToString(deterministic=True) == plain.SerializeToString(
        deterministic=True
    )
    assert list(request.trajectory.reward.shape) == [3, 6]
    advantage = np.arange(18, dtype=np.float32).reshape(SHAPE)
    loss = {"advantage": advantage, "value_target": advantage + 1}
    shaped_loss = prepare_loss(torchrl_shapes=True, **shaped, **_torchrl_shaped(loss, tuple(loss)))
    np.testing.assert_array_equal(decode_numpy(shaped_loss.request.value_target), advantage + 1)
    assert shaped_loss.request == prepare_loss(**arrays, **values, **loss).request


def test_torchrl_shapes_needs_every_per_step_array_torchrl_shaped() -> None:
    arrays = _torchrl_shaped(make_batch().arrays(), ("reward", "terminated"))
    with pytest.raises(ValueError, match=r"done: torchrl_shapes=True expects .*got shape \[3, 6\]"):
        prepare(torchrl_shapes=True, **arrays)
    with pytest.raises(TypeError, match="torchrl_shapes must be a bool"):
        prepare(torchrl_shapes="yes", **make_batch().arrays())


@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_torchrl_shapes_results_get_the_trailing_one_back(kind: str) -> None:
    arrays: dict[str, Any] = _torchrl_shaped(make_batch().arrays(), PER_STEP)
    if kind == "torch":
        arrays = {k: torch.from_numpy(np.array(v)) for k, v in arrays.items()}
    prepared = prepare(torchrl_shapes=True, **arrays)
    response = _responses()["ComputeAdvantage"]
    response.state_value.CopyFrom(encode(np.zeros(SHAPE, np.float32)))
    response.next_state_value.CopyFrom(encode(np.zeros(SHAPE, np.float32)))
    result = decode_response(response, prepared.output)
    for name in ("advantage", "value_target", "state_value", "next_state_value"):
        assert tuple(getattr(result, name).shape) == (3, 6, 1), name
    assert float(result.advantage[1, 2, 0]) == 8.0  # row-major [3, 6]: 1·6 + 2
    assert isinstance(result.advantage, torch.Tensor if kind == "torch" else np.ndarray)


def test_torchrl_shapes_against_the_server(grpc_target: str) -> None:
    batch = make_batch(seed=5)
    arrays = {k: torch.from_numpy(v) for k, v in batch.arrays().items()}
    with AdvantageClient(grpc_target, timeout=60) as client:
        plain = client.compute_advantage(**arrays)
        shaped = client.compute_advantage(
            torchrl_shapes=True, **_torchrl_shaped(arrays, ("reward", "done", "terminated"))
        )
        loss = client.compute_loss(
            torchrl_shapes=True,
            **_torchrl_shaped(
                {k: torch.from_numpy(v) for k, v in batch.arrays(with_vtrace=True).items()},
                PER_STEP,
            ),
        )
    assert shaped.advantage.shape == (3, 6, 1)
    torch.testing.assert_close(shaped.advantage, plain.advantage.unsqueeze(-1))
    torch.testing.assert_close(shaped.next_state_value, plain.next_state_value.unsqueeze(-1))
    assert np.isfinite(loss.loss)
