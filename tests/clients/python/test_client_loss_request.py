"""ComputeLoss request building (loss knobs, estimator options, TensorDict layout) and the
parameter streams (chunking, reassembly), without a server."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from advantage_client import (
    GAE,
    LOSS_KNOBS,
    LOSSES,
    TD0,
    AdvantageClient,
    ClipPPO,
    LossOptions,
    TDLambda,
    loss_from,
)
from advantage_client._codec import decode_numpy
from advantage_client._deprecated import loss_keywords
from advantage_client._loss import prepare_loss
from advantage_client._parameters import (
    ParameterAssembler,
    parameters_request,
    set_parameters_stream,
)
from advantage_client._pb.advantage.v1 import advantage_pb2 as pb

from tests.support.client_data import make_batch, to_tensordict

# A non-default value for every loss knob.
KNOB_VALUES: dict[str, Any] = {
    "entropy_bonus": False,
    "entropy_coeff": 0.05,
    "critic_coeff": 0.5,
    "loss_critic_type": "l2",
    "normalize_advantage": True,
    "clip_value": 0.3,
    "clip_epsilon": 0.1,
    "dtarg": 0.02,
    "beta": 0.7,
    "increment": 1.5,
    "decrement": 0.6,
    "gamma": 0.9,
    "lmbda": 0.8,
    "rho_thresh": 1.2,
    "c_thresh": 0.9,
    "rho_pg_thresh": 1.1,
}
ALL_LOSS_KNOBS = sorted(set().union(*LOSS_KNOBS.values()))


def _arrays(**extra: Any) -> dict[str, Any]:
    return {**make_batch().arrays(with_vtrace=True), **extra}


def _prepare(loss: str = "ppo_clip", data: Any = None, **kwargs: Any) -> pb.ComputeLossRequest:
    knobs = {k: kwargs.pop(k) for k in list(kwargs) if k in KNOB_VALUES}
    arrays = _arrays() if data is None else {}
    if loss == "ppo_kl" and data is None and "behaviour_distribution" not in kwargs:
        kwargs["behaviour_distribution"] = {"logits": np.zeros((3, 6, 2), np.float32)}
    if data is not None:
        kwargs.setdefault("in_keys", ["observation"])
        kwargs.setdefault("distribution", "categorical")
    return prepare_loss(data, loss=_loss(loss, **knobs), **{**arrays, **kwargs}).request


def _loss(loss: str, **knobs: Any) -> LossOptions:
    """The option object of the loss named `loss`, with `knobs` set."""
    return type(loss_from(loss))(**knobs)


# ---- the loss oneof and its knobs ----------------------------------------------------------------


def test_knob_table_comes_from_the_contract() -> None:
    assert LOSSES == ("ppo_clip", "ppo_kl", "ppo", "a2c", "reinforce", "impala")
    shared = {"entropy_bonus", "entropy_coeff", "critic_coeff", "loss_critic_type"}
    assert LOSS_KNOBS["ppo"] == shared | {"normalize_advantage", "clip_value"}
    assert LOSS_KNOBS["ppo_clip"] == LOSS_KNOBS["ppo"] | {"clip_epsilon"}
    assert LOSS_KNOBS["ppo_kl"] == LOSS_KNOBS["ppo"] | {"dtarg", "beta", "increment", "decrement"}
    assert LOSS_KNOBS["a2c"] == shared | {"clip_value"}
    assert LOSS_KNOBS["reinforce"] == {"loss_critic_type", "clip_value"}
    assert LOSS_KNOBS["impala"] == {
        "gamma", "lmbda", "rho_thresh", "c_thresh", "rho_pg_thresh",
        "entropy_coeff", "critic_coeff", "entropy_bonus",
    }  # fmt: skip


@pytest.mark.parametrize("loss", LOSSES)
def test_every_loss_selects_its_oneof_with_nothing_set(loss: str) -> None:
    request = _prepare(loss)
    assert request.WhichOneof("loss") == loss
    msg = getattr(request, loss)
    assert msg == type(msg)()  # TorchRL's defaults apply
    assert request.WhichOneof("estimator") is None  # the server's GAE with the model's γ, λ
    assert not request.apply_update and not request.HasField("expected_parameter_version")


@pytest.mark.parametrize(("loss", "knob"), [(n, k) for n in LOSSES for k in sorted(LOSS_KNOBS[n])])
def test_every_knob_lands_in_its_field(loss: str, knob: str) -> None:
    msg = getattr(_prepare(loss, **{knob: KNOB_VALUES[knob]}), loss)
    target = msg if knob in msg.DESCRIPTOR.fields_by_name else msg.options
    if knob == "loss_critic_type":
        assert target.loss_critic_type == pb.CRITIC_LOSS_L2
    else:
        assert getattr(target, knob) == pytest.approx(KNOB_VALUES[knob])
    if knob not in ("normalize_advantage", "loss_critic_type"):  # proto3 optional
        assert target.HasField(knob)


def test_all_knobs_of_a_loss_together() -> None:
    knobs = {k: KNOB_VALUES[k] for k in LOSS_KNOBS["ppo_kl"]}
    expected = pb.KLPENPPOLoss(
        options=pb.PolicyLossOptions(
            entropy_bonus=False,
            entropy_coeff=0.05,
            critic_coeff=0.5,
            loss_critic_type=pb.CRITIC_LOSS_L2,
            normalize_advantage=True,
            clip_value=0.3,
        ),
        dtarg=0.02,
        beta=0.7,
        increment=1.5,
        decrement=0.6,
    )
    assert _prepare("ppo_kl", **knobs).ppo_kl == expected
    impala = {k: KNOB_VALUES[k] for k in LOSS_KNOBS["impala"]}
    assert _prepare("impala", **impala).impala == pb.ImpalaLoss(
        gamma=0.9, lmbda=0.8, rho_thresh=1.2, c_thresh=0.9, rho_pg_thresh=1.1,
        entropy_coeff=0.05, critic_coeff=0.5, entropy_bonus=False,
    )  # fmt: skip


def test_clip_epsilon_pair_is_the_asymmetric_clip() -> None:
    msg = _prepare(clip_epsilon=(0.1, 0.3)).ppo_clip
    assert (msg.clip_epsilon_low, msg.clip_epsilon_high) == pytest.approx((0.1, 0.3))
    assert not msg.HasField("clip_epsilon")
    assert _prepare(clip_epsilon=[0.0, 0.0]).ppo_clip.HasField("clip_epsilon_low")


@pytest.mark.parametrize(
    ("loss", "knob"), [(n, k) for n in LOSSES for k in ALL_LOSS_KNOBS if k not in LOSS_KNOBS[n]]
)
def test_a_knob_the_loss_does_not_take_is_refused(loss: str, knob: str) -> None:  # fmt: skip
    with pytest.raises(TypeError, match=f"unexpected keyword argument '{knob}'"):
        _prepare(loss, **{knob: KNOB_VALUES[knob]})
    # The deprecated keyword form names the loss.
    with pytest.raises(TypeError, match=f"takes no '{knob}'"):
        loss_keywords(loss, None, {knob: KNOB_VALUES[knob]})


def test_deprecated_estimator_knobs_at_the_top_level_point_to_the_estimator() -> None:
    with pytest.raises(TypeError, match=r"estimator=GAE\(gamma=\.\.\.\)"):
        loss_keywords("ppo_clip", None, {"gamma": 0.9})


@pytest.mark.parametrize(
    ("loss", "knobs", "error", "match"),
    [
        ("ppo_clip", {"clip_epsilon": 0.0}, ValueError, "clip_epsilon must be > 0"),
        ("ppo_clip", {"clip_epsilon": (1.0, 0.2)}, ValueError, "0 ≤ low < 1"),
        ("ppo_clip", {"clip_epsilon": (0.1, -0.2)}, ValueError, "high ≥ 0"),
        ("ppo_clip", {"clip_epsilon": (0.1, 0.2, 0.3)}, TypeError, "pair"),
        ("ppo_clip", {"clip_epsilon": "0.2"}, TypeError, "a float or a"),
        ("ppo_clip", {"entropy_coeff": -0.1}, ValueError, "entropy_coeff must be ≥ 0"),
        ("ppo_clip", {"entropy_coeff": float("nan")}, ValueError, "entropy_coeff"),
        ("ppo_clip", {"critic_coeff": True}, TypeError, "critic_coeff must be a float"),
        ("ppo_clip", {"entropy_bonus": 1}, TypeError, "entropy_bonus must be a bool"),
        ("ppo_clip", {"loss_critic_type": "huber"}, ValueError, "loss_critic_type"),
        ("a2c", {"clip_value": 0.0}, ValueError, "clip_value must be > 0"),
        ("ppo_kl", {"dtarg": -1.0}, ValueError, "dtarg must be > 0"),
        ("ppo_kl", {"beta": -1.0}, ValueError, "beta must be ≥ 0"),
        ("impala", {"gamma": 1.5}, ValueError, r"gamma must be in \[0, 1\]"),
        ("impala", {"lmbda": -0.1}, ValueError, r"lmbda must be in \[0, 1\]"),
        ("impala", {"rho_thresh": 0.0}, ValueError, "rho_thresh must be > 0"),
        ("ppo_clip", {"bogus": 1.0}, TypeError, "unexpected keyword argument 'bogus'"),
        ("sac", {}, ValueError, "unknown loss 'sac'"),
    ],
)
def test_bad_knob_values_are_refused(
    loss: str, knobs: dict[str, Any], error: type, match: str
) -> None:
    with pytest.raises(error, match=match):
        _loss(loss, **knobs)


# ---- estimator, advantage, update ----------------------------------------------------------------


def test_estimator_options_land_in_the_estimator() -> None:
    request = _prepare(estimator=TDLambda(gamma=0.9, lmbda=0.8))
    assert request.WhichOneof("estimator") == "td_lambda"
    assert request.td_lambda.gamma.scalar == pytest.approx(0.9)
    assert request.td_lambda.lmbda.scalar == pytest.approx(0.8)
    gae = _prepare(estimator=GAE(lmbda=0.5))
    assert gae.WhichOneof("estimator") == "gae" and gae.gae.lmbda.scalar == 0.5
    assert _prepare(estimator="vtrace").WhichOneof("estimator") == "vtrace"
    batch = make_batch()
    gamma = np.full(batch.reward.shape, 0.9)
    per_step = _prepare(estimator=TD0(gamma=gamma)).td0.gamma
    assert decode_numpy(per_step.per_step).dtype == np.float32  # the reward's dtype


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"estimator": "mc"}, ValueError, "unknown estimator"),
        ({"estimator": ClipPPO()}, TypeError, "estimator must be"),
        ({"loss": "impala", "estimator": "gae"}, TypeError, "impala computes its own"),
        ({"loss": "impala", "estimator": GAE(gamma=0.9)}, TypeError, "impala"),
    ],
)
def test_estimator_errors(kwargs: dict[str, Any], error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        _prepare(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"estimator": "td0", "estimator_options": {"lmbda": 0.9}}, TypeError, "takes no 'lmbda'"),
        ({"estimator_options": {"gama": 0.9}}, TypeError, "unknown estimator knob"),
        ({"estimator_options": {"gamma": 2.0}}, ValueError, "gamma must be in"),
        ({"estimator_options": [("gamma", 0.9)]}, TypeError, "must be a mapping"),
        ({"loss": "impala", "estimator_options": {"gamma": 0.9}}, TypeError, "impala"),
        ({"estimator": TD0(gamma=0.5), "estimator_options": {"gamma": 0.9}}, TypeError,
         "in the option object itself"),
    ],
)  # fmt: skip
@pytest.mark.filterwarnings("ignore:compute_loss:DeprecationWarning")
def test_deprecated_estimator_options_errors(
    kwargs: dict[str, Any], error: type, match: str
) -> None:
    """The previous release's estimator_options, through the client (refused before sending)."""
    with (
        AdvantageClient("127.0.0.1:1", timeout=0.01) as client,  # nothing there: no RPC happens
        pytest.raises(error, match=match),
    ):
        client.compute_loss(**kwargs, **_arrays())


def test_advantage_and_value_target_skip_the_estimator() -> None:
    batch = make_batch()
    adv = np.arange(18, dtype=np.float32).reshape(3, 6)
    request = _prepare("a2c", advantage=adv, value_target=adv + 1)
    np.testing.assert_array_equal(decode_numpy(request.advantage), adv)
    np.testing.assert_array_equal(decode_numpy(request.value_target), adv + 1)
    assert request.WhichOneof("estimator") is None
    with pytest.raises(ValueError, match="both advantage and value_target"):
        _prepare(advantage=adv)
    with pytest.raises(TypeError, match="estimator would not run"):
        _prepare(advantage=adv, value_target=adv, estimator=TD0())
    with pytest.raises(TypeError, match="impala"):
        _prepare("impala", advantage=adv, value_target=adv)
    assert batch.reward.shape == adv.shape


def test_update_fields() -> None:
    request = _prepare(apply_update=True, expected_parameter_version=7, model="demo")
    assert request.apply_update and request.expected_parameter_version == 7
    assert request.model_name == "demo"
    assert _prepare(apply_update=True, expected_parameter_version=0).HasField(
        "expected_parameter_version"
    )
    assert _prepare(expected_parameter_version=3).expected_parameter_version == 3
    with pytest.raises(TypeError, match="must be an int"):
        _prepare(apply_update=True, expected_parameter_version=1.0)
    with pytest.raises(TypeError, match="apply_update must be a bool"):
        _prepare(apply_update=1)


def test_trajectory_fields_and_argument_errors() -> None:
    batch = make_batch()
    traj = _prepare("ppo_clip", form="compact").trajectory
    assert traj.form == pb.TRAJECTORY_FORM_COMPACT
    assert list(traj.observation["observation"].shape) == [3, 7, 4]
    assert decode_numpy(traj.action).dtype == np.int64 and traj.HasField("sample_log_prob")
    assert not traj.HasField("log_prob")
    arrays = batch.arrays(with_vtrace=True)
    with pytest.raises(TypeError, match="needs sample_log_prob"):
        prepare_loss(loss="ppo", **{**arrays, "sample_log_prob": None})
    assert prepare_loss(loss="a2c", **{**arrays, "sample_log_prob": None}).request
    with pytest.raises(TypeError, match="needs action"):
        prepare_loss(**{**arrays, "action": None})
    with pytest.raises(TypeError, match='behaviour_distribution=\\{"logits"'):
        prepare_loss(loss="ppo_kl", **arrays)
    with pytest.raises(TypeError, match="ppo_kl only"):
        _prepare("ppo", behaviour_distribution={"logits": np.zeros((3, 6, 2))})
    with pytest.raises(ValueError, match="empty"):
        _prepare("ppo_kl", behaviour_distribution={})
    with pytest.raises(ValueError, match="both state_value and next_state_value"):
        _prepare(state_value=np.zeros((3, 6), np.float32))
    with pytest.raises(TypeError, match="positional argument must be a TensorDict"):
        prepare_loss(batch.reward)
    with pytest.raises(TypeError, match="recompute_advantage applies to TensorDict"):
        _prepare(recompute_advantage=True)


def test_behaviour_distribution_is_encoded() -> None:
    logits = np.random.default_rng(0).normal(size=(3, 6, 2)).astype(np.float32)
    request = _prepare("ppo_kl", behaviour_distribution={"logits": torch.from_numpy(logits)})
    assert list(request.behaviour_distribution) == ["logits"]
    np.testing.assert_array_equal(decode_numpy(request.behaviour_distribution["logits"]), logits)


# ---- TensorDict --------------------------------------------------------------------------------


def test_tensordict_is_read_like_torchrl() -> None:
    batch = make_batch()
    td = to_tensordict(batch)
    from_td = _prepare("ppo_clip", data=td)
    from_arrays = _prepare("ppo_clip")
    assert from_td == from_arrays  # the same bytes on the wire
    td["action_log_prob"] = td.pop("sample_log_prob")  # TorchRL 0.14's default key
    assert _prepare("ppo_clip", data=td) == from_arrays
    del td["action_log_prob"]
    with pytest.raises(KeyError, match="behaviour log-probability"):
        _prepare("ppo", data=td)
    assert not _prepare("reinforce", data=td).trajectory.HasField("sample_log_prob")


def test_tensordict_advantage_state_values_and_behaviour() -> None:
    td = to_tensordict(make_batch())
    td["advantage"] = torch.ones(3, 6, 1)
    td["value_target"] = torch.full((3, 6, 1), 2.0)
    td["state_value"] = torch.zeros(3, 6, 1)
    td["next", "state_value"] = torch.zeros(3, 6, 1)
    td["logits"] = torch.randn(3, 6, 2)
    request = _prepare("ppo_kl", data=td)
    assert decode_numpy(request.advantage).shape == (3, 6)
    assert np.all(decode_numpy(request.value_target) == 2.0)
    assert request.trajectory.HasField("state_value")
    assert request.trajectory.HasField("next_state_value")
    np.testing.assert_array_equal(
        decode_numpy(request.behaviour_distribution["logits"]), td["logits"].numpy()
    )
    again = _prepare("ppo_kl", data=td, recompute_advantage=True, estimator="td0")
    assert not again.HasField("advantage") and again.WhichOneof("estimator") == "td0"
    with pytest.raises(TypeError, match="recompute_advantage=True"):
        _prepare("ppo_kl", data=td, estimator="td0")
    assert not _prepare("impala", data=td).HasField("advantage")  # impala ignores them
    del td["value_target"]
    with pytest.raises(KeyError, match="no 'value_target'"):
        _prepare("ppo", data=td)


def test_tensordict_behaviour_keys_follow_the_actors_distribution() -> None:
    td = to_tensordict(make_batch())
    with pytest.raises(KeyError, match=r"\['logits'\]"):
        _prepare("ppo_kl", data=td)
    td["loc"] = torch.zeros(3, 6, 1)
    td["scale"] = torch.ones(3, 6, 1)
    request = _prepare("ppo_kl", data=td, distribution="normal")
    assert sorted(request.behaviour_distribution) == ["loc", "scale"]
    explicit = {"logits": torch.zeros(3, 6, 2)}
    request = _prepare("ppo_kl", data=td, behaviour_distribution=explicit)
    assert list(request.behaviour_distribution) == ["logits"]


def test_tensordict_errors() -> None:
    td = to_tensordict(make_batch())
    with pytest.raises(KeyError, match="'action'"):
        _prepare(data=td.exclude("action"))
    with pytest.raises(KeyError, match="observation"):
        _prepare(data=td.exclude(("next", "observation")))
    with pytest.raises(TypeError, match="not both"):
        _prepare(data=td, reward=np.zeros((3, 6), np.float32))


# ---- parameter streams -----------------------------------------------------------------------


def _params() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "value_network.0.weight": rng.normal(size=(64, 4)).astype(np.float32),  # 1 KiB
        "value_network.0.bias": rng.normal(size=(64,)).astype(np.float32),
        "actor_network.empty": np.zeros((0, 3), np.float32),
        "actor_network.scalar": np.float64(2.5),
        "actor_network.steps": np.arange(5, dtype=np.int64),
    }


@pytest.mark.parametrize("limit", [1, 8, 100, 256, 1 << 20])
def test_set_stream_chunks_and_the_assembler_reassembles(limit: int) -> None:
    params = _params()
    chunks = list(set_parameters_stream(params, model="demo", max_chunk_bytes=limit))
    for chunk in chunks:
        sizes = [len(t.data.raw_data) for t in chunk.tensors]
        assert sum(sizes) <= limit or len(sizes) == 1, sizes
        for named in chunk.tensors:
            assert len(named.data.shape) == 1  # flat pieces
    assert chunks[0].model_name == "demo" and not chunks[0].HasField("parameter_version")
    assert all(not c.model_name for c in chunks[1:])
    if limit <= 256:
        assert len(chunks) >= 1024 // max(limit, 4)
    # The server streams the same layout back; the assembler takes it.
    assembler = ParameterAssembler()
    for chunk in chunks:
        chunk.parameter_version = 3
        assembler.add(chunk)
    version, tensors = assembler.result()
    assert version == 3 and list(tensors) == list(params)
    for name, value in params.items():
        np.testing.assert_array_equal(tensors[name], value)
        assert tensors[name].dtype == np.asarray(value).dtype
        assert tensors[name].flags.writeable


def test_set_stream_prefix_version_torch_and_tensordict() -> None:
    from tensordict import TensorDict

    net = torch.nn.Sequential(torch.nn.Linear(4, 3))
    chunks = list(set_parameters_stream(net.state_dict(), prefix="actor_network.",
                                        expected_version=0))  # fmt: skip
    assert chunks[0].HasField("parameter_version") and chunks[0].parameter_version == 0
    names = [t.name for t in chunks[0].tensors]
    assert names == ["actor_network.0.weight", "actor_network.0.bias"]
    from_td = list(set_parameters_stream(TensorDict.from_module(net), prefix="actor_network."))
    assert sorted(t.name for t in from_td[0].tensors) == sorted(names)
    bf16 = list(set_parameters_stream({"x": torch.ones(3, dtype=torch.bfloat16)}))
    assert bf16[0].tensors[0].data.dtype == pb.DTYPE_BFLOAT16


def test_assembler_to_torch_and_bfloat16() -> None:
    value = torch.randn(5, 3).to(torch.bfloat16)
    chunks = list(set_parameters_stream({"w": value}, max_chunk_bytes=4))
    for as_ in ("torch", "numpy"):
        assembler = ParameterAssembler(as_)
        for chunk in chunks:
            chunk.parameter_version = 0
            assembler.add(chunk)
        out = assembler.result().tensors["w"]
        if as_ == "torch":
            assert out.dtype == torch.bfloat16 and torch.equal(out, value)
        else:
            np.testing.assert_array_equal(out, value.float().numpy())  # widened exactly


def _piece(name: str, shape: list[int], offset: int, values: list[float], **kw: Any) -> Any:
    data = np.asarray(values, np.float32)
    return pb.NamedTensor(
        name=name,
        shape=shape,
        offset=offset,
        data=pb.Tensor(
            dtype=pb.DTYPE_FLOAT32, shape=kw.get("data_shape", [data.size]), raw_data=data.tobytes()
        ),
    )


@pytest.mark.parametrize(
    ("chunks", "match"),
    [
        ([], "empty"),
        ([pb.ParameterChunk(tensors=[_piece("w", [2], 0, [1, 2])])], "no parameter_version"),
        ([pb.ParameterChunk(parameter_version=1, tensors=[_piece("w", [3], 0, [1, 2])])],
         "cover 2 of its 3"),
        ([pb.ParameterChunk(parameter_version=1, tensors=[_piece("w", [2], 1, [1, 2])])],
         "offset 1, expected 0"),
        ([pb.ParameterChunk(parameter_version=1, tensors=[_piece("w", [4], 0, [1, 2]),
                                                          _piece("w", [4], 1, [3, 4])])],
         "offset 1, expected 2"),
        ([pb.ParameterChunk(parameter_version=1, tensors=[_piece("w", [2], 0, [1, 2, 3])])],
         "more than its 2"),
        ([pb.ParameterChunk(parameter_version=1, tensors=[_piece("w", [4], 0, [1, 2]),
                                                          _piece("w", [5], 2, [3, 4])])],
         "shape"),
        ([pb.ParameterChunk(parameter_version=1, tensors=[_piece("w", [2, 2], 0, [1, 2, 3, 4],
                                                                 data_shape=[2, 2])])],
         "must be flat"),
        ([pb.ParameterChunk(parameter_version=1, tensors=[_piece("w", [4], 0, [1, 2])]),
          pb.ParameterChunk(parameter_version=2, tensors=[_piece("w", [4], 2, [3, 4])])],
         "parameter_version 2"),
        ([pb.ParameterChunk(model_name="a", parameter_version=1),
          pb.ParameterChunk(model_name="b", parameter_version=1)], "model_name 'b'"),
    ],
)  # fmt: skip
def test_assembler_refuses_malformed_streams(chunks: list[Any], match: str) -> None:
    assembler = ParameterAssembler()
    with pytest.raises(ValueError, match=match):
        for chunk in chunks:
            assembler.add(chunk)
        assembler.result()


def test_empty_prefix_result_is_an_empty_dict() -> None:
    assembler = ParameterAssembler()
    assembler.add(pb.ParameterChunk(model_name="demo", parameter_version=4))
    assert assembler.result() == (4, {})


def test_parameter_argument_errors_are_raised_before_sending() -> None:
    assert parameters_request("", "actor_network.", 0, "numpy").prefixes == ["actor_network."]
    with AdvantageClient("127.0.0.1:1", timeout=0.01) as c:  # nothing there: no RPC happens
        with pytest.raises(ValueError, match="as_ must be"):
            c.get_parameters(as_="jax")
        with pytest.raises(ValueError, match="max_chunk_bytes must be ≥ 0"):
            c.get_parameters(max_chunk_bytes=-1)
        with pytest.raises(TypeError, match="prefixes must be strings"):
            c.get_parameters(prefixes=[1])
        with pytest.raises(ValueError, match="max_chunk_bytes must be > 0"):
            c.set_parameters(_params(), max_chunk_bytes=0)
        with pytest.raises(ValueError, match="params is empty"):
            c.set_parameters({})
        with pytest.raises(TypeError, match="must be a"):
            c.set_parameters([("w", np.zeros(2))])
        with pytest.raises(TypeError, match="non-empty strings"):
            c.set_parameters({1: np.zeros(2)})
        with pytest.raises(TypeError, match=r"params\['w'\]: dtype complex128"):
            c.set_parameters({"w": np.zeros(2, complex)})
        with pytest.raises(TypeError, match="expected_version must be an int"):
            c.set_parameters(_params(), expected_version="3")
        with pytest.raises(TypeError, match="takes no 'gamma'"):
            c.compute_loss(gamma=0.9, **_arrays())
