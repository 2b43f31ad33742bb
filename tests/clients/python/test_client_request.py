"""Request building (estimators, knobs, compact form, TensorDict layout) and response decoding,
without a server."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from advantage_client import GAE, KNOBS, AdvantageResult, EstimatorOptions, compact_observations
from advantage_client._codec import decode_numpy, encode
from advantage_client._deprecated import advantage_keywords
from advantage_client._pb.advantage.v1 import advantage_pb2 as pb
from advantage_client._request import decode_response, needs_input_keys, prepare
from advantage_client.options import estimator_from
from tensordict import TensorDict

from tests.support.client_data import make_batch, to_tensordict

ALL_KNOBS = sorted(set().union(*KNOBS.values()))
SCALAR_VALUE = {
    "gamma": 0.9,
    "lmbda": 0.8,
    "average_gae": True,
    "average_adv": True,
    "average_rewards": True,
    "rho_thresh": 2.0,
    "c_thresh": 1.5,
    "rho_pg_thresh": 3.0,
}


def _options(estimator: str, **knobs: Any) -> EstimatorOptions:
    """The option object of the estimator named `estimator`, with `knobs` set."""
    return type(estimator_from(estimator))(**knobs)


def _prepare(
    estimator: str = "gae", form: str = "full", **kwargs: Any
) -> pb.ComputeAdvantageRequest:
    knobs = {k: kwargs.pop(k) for k in list(kwargs) if k in SCALAR_VALUE}
    arrays = make_batch().arrays() if not kwargs else {}
    arrays.update(kwargs)
    return prepare(estimator=_options(estimator, **knobs), **arrays).request


# ---- estimators and knobs ------------------------------------------------------------------------


def test_default_is_gae_with_the_models_defaults() -> None:
    request = _prepare()
    assert request.WhichOneof("estimator") == "gae"
    assert not request.gae.HasField("gamma") and not request.gae.HasField("lmbda")
    assert not request.gae.average_gae
    assert request.model_name == ""


@pytest.mark.parametrize("estimator", sorted(KNOBS))
def test_every_estimator_selects_its_oneof_with_no_knob_set(estimator: str) -> None:
    request = _prepare(estimator)
    assert request.WhichOneof("estimator") == estimator
    msg = getattr(request, estimator)
    assert msg == type(msg)()  # nothing set: server defaults apply


@pytest.mark.parametrize(("estimator", "knob"), [(e, k) for e in KNOBS for k in sorted(KNOBS[e])])
def test_every_knob_lands_in_its_field(estimator: str, knob: str) -> None:
    request = _prepare(estimator, **{knob: SCALAR_VALUE[knob]})
    msg = getattr(request, estimator)
    field = getattr(msg, knob)
    if isinstance(field, pb.Coefficient):
        assert field.WhichOneof("value") == "scalar"
        assert field.scalar == pytest.approx(SCALAR_VALUE[knob])
    else:
        assert field == pytest.approx(SCALAR_VALUE[knob])
        if knob not in ("average_gae", "average_adv", "average_rewards"):
            assert msg.HasField(knob)


def test_vtrace_knobs_together() -> None:
    request = _prepare(
        "vtrace", gamma=0.5, lmbda=0.9, rho_thresh=2.0, c_thresh=1.5, rho_pg_thresh=3.0
    )
    v = request.vtrace
    assert (v.gamma.scalar, v.lmbda, v.rho_thresh, v.c_thresh, v.rho_pg_thresh) == (
        0.5,
        pytest.approx(0.9),
        2.0,
        1.5,
        3.0,
    )


@pytest.mark.parametrize(
    ("estimator", "knob"), [(e, k) for e in KNOBS for k in ALL_KNOBS if k not in KNOBS[e]]
)
def test_a_knob_the_estimator_does_not_take_is_refused(estimator: str, knob: str) -> None:
    with pytest.raises(TypeError, match=f"unexpected keyword argument '{knob}'"):
        _prepare(estimator, **{knob: SCALAR_VALUE[knob]})
    # The deprecated keyword form names the estimator.
    with pytest.raises(TypeError, match=f"estimator '{estimator}' takes no '{knob}'"):
        advantage_keywords(estimator, {knob: SCALAR_VALUE[knob]})


def test_unknown_estimator_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown estimator 'ppo'"):
        _prepare("ppo")


@pytest.mark.parametrize(
    ("estimator", "knobs", "error", "match"),
    [
        ("gae", {"gamma": 1.5}, ValueError, r"gamma must be in \[0, 1\]"),
        ("gae", {"lmbda": -0.1}, ValueError, r"lmbda must be in \[0, 1\]"),
        ("td0", {"gamma": True}, TypeError, "td0's gamma must be a float or a per-step array"),
        ("gae", {"average_gae": 1}, TypeError, "average_gae must be a bool"),
        ("vtrace", {"rho_thresh": 0.0}, ValueError, "rho_thresh must be > 0"),
        ("vtrace", {"c_thresh": -1.0}, ValueError, "c_thresh must be > 0"),
        ("vtrace", {"lmbda": 1.5}, ValueError, r"lmbda must be in \[0, 1\]"),
        ("vtrace", {"lmbda": np.ones((3, 6))}, TypeError, "vtrace's lmbda must be a float"),
    ],
)
def test_bad_knob_values_are_refused(
    estimator: str, knobs: dict[str, Any], error: type, match: str
) -> None:
    with pytest.raises(error, match=match):
        _options(estimator, **knobs)


@pytest.mark.parametrize("estimator", ["gae", "td0", "td1", "td_lambda", "vtrace"])
def test_per_step_gamma_travels_in_the_rewards_dtype(estimator: str) -> None:
    batch = make_batch(dtype=np.float64)
    gamma = np.full(batch.reward.shape, 0.9, dtype=np.float32)
    request = prepare(estimator=_options(estimator, gamma=gamma), **batch.arrays()).request
    coefficient = getattr(request, estimator).gamma
    assert coefficient.WhichOneof("value") == "per_step"
    assert coefficient.per_step.dtype == pb.DTYPE_FLOAT64
    np.testing.assert_array_equal(decode_numpy(coefficient.per_step), gamma)


def test_per_step_lambda_accepts_torchrls_trailing_dim_and_checks_the_shape() -> None:
    batch = make_batch()
    lmbda = torch.full((*batch.reward.shape, 1), 0.5)
    request = prepare(estimator=GAE(lmbda=lmbda), **batch.arrays()).request
    assert list(request.gae.lmbda.per_step.shape) == list(batch.reward.shape)
    with pytest.raises(ValueError, match=r"lmbda: .* reward's shape \[3, 6\], got \[6\]"):
        prepare(estimator=GAE(lmbda=np.full(6, 0.5)), **batch.arrays())


def test_zero_dim_array_coefficient_is_a_scalar() -> None:
    request = prepare(estimator=GAE(gamma=np.float32(0.5)), **make_batch().arrays()).request
    assert request.gae.gamma.scalar == 0.5


# ---- array arguments ---------------------------------------------------------------------------


def test_arrays_are_encoded_under_their_fields() -> None:
    batch = make_batch()
    request = prepare(
        model="demo",
        form="full",
        **batch.arrays(with_vtrace=True),
        state_value=np.zeros((3, 6), np.float32),
        next_state_value=np.ones((3, 6), np.float32),
        log_prob=batch.sample_log_prob,
    ).request
    traj = request.trajectory
    assert request.model_name == "demo"
    assert traj.form == pb.TRAJECTORY_FORM_FULL
    np.testing.assert_array_equal(decode_numpy(traj.reward), batch.reward)
    np.testing.assert_array_equal(decode_numpy(traj.done), batch.done)
    np.testing.assert_array_equal(decode_numpy(traj.terminated), batch.terminated)
    np.testing.assert_array_equal(decode_numpy(traj.observation["observation"]), batch.observation)
    np.testing.assert_array_equal(
        decode_numpy(traj.next_observation["observation"]), batch.next_observation
    )
    np.testing.assert_array_equal(decode_numpy(traj.action), batch.action)
    np.testing.assert_array_equal(decode_numpy(traj.sample_log_prob), batch.sample_log_prob)
    np.testing.assert_array_equal(decode_numpy(traj.log_prob), batch.sample_log_prob)
    assert decode_numpy(traj.next_state_value).sum() == 18


def test_optional_fields_are_absent_when_not_given() -> None:
    traj = prepare(reward=np.zeros((2, 3)), done=np.zeros((2, 3), bool)).request.trajectory
    for name in (
        "terminated",
        "state_value",
        "next_state_value",
        "action",
        "sample_log_prob",
        "log_prob",
    ):
        assert not traj.HasField(name)
    assert len(traj.observation) == 0


def test_observation_keys() -> None:
    batch = make_batch()
    request = prepare(
        reward=batch.reward,
        done=batch.done,
        observation=batch.observation,
        next_observation=batch.next_observation,
        in_keys=["obs"],
    ).request
    assert list(request.trajectory.observation) == ["obs"]
    request = prepare(
        reward=batch.reward,
        done=batch.done,
        observation={"a": batch.observation, "b": batch.action},
        next_observation={"a": batch.next_observation, "b": batch.action},
    ).request
    assert sorted(request.trajectory.observation) == ["a", "b"]
    assert sorted(request.trajectory.next_observation) == ["a", "b"]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"reward": None}, TypeError, "needs reward"),
        ({"reward": None, "done": None}, TypeError, "needs reward and done"),
        ({"state_value": np.zeros((3, 6))}, ValueError, "both state_value and next_state_value"),
        ({"form": "tiny"}, ValueError, "form must be 'auto', 'full' or 'compact'"),
        ({"model": 3}, TypeError, "model must be a str"),
    ],
)
def test_argument_errors(kwargs: dict[str, Any], error: type, match: str) -> None:
    arrays: dict[str, Any] = make_batch().arrays()
    form = kwargs.pop("form", "full")
    model = kwargs.pop("model", "")
    arrays.update(kwargs)
    with pytest.raises(error, match=match):
        prepare(form=form, model=model, **arrays)


def test_positional_data_must_be_a_tensordict_and_not_mixed_with_arrays() -> None:
    batch = make_batch()
    with pytest.raises(TypeError, match="must be a TensorDict"):
        prepare(batch.reward)
    with pytest.raises(TypeError, match=r"not both \(got \['reward'\]\)"):
        prepare(to_tensordict(batch), in_keys=["observation"], reward=batch.reward)


def test_recompute_values_drops_given_state_values() -> None:
    batch = make_batch()
    request = prepare(
        recompute_values=True,
        state_value=np.zeros((3, 6), np.float32),
        next_state_value=np.zeros((3, 6), np.float32),
        **batch.arrays(),
    ).request
    assert not request.trajectory.HasField("state_value")


# ---- compact form --------------------------------------------------------------------------------


def _hand_worked() -> dict[str, np.ndarray]:
    # Row 0: step 1 truncated (true next obs 5, then reset to 2). Row 1: step 0 truncated (true
    # next 7, reset to 11); final step terminated (its next obs 13 is never read).
    return {
        "observation": np.array([[[0.0], [1.0], [2.0]], [[10.0], [11.0], [12.0]]], np.float32),
        "next_observation": np.array([[[1.0], [5.0], [3.0]], [[7.0], [12.0], [13.0]]], np.float32),
        "done": np.array([[False, True, False], [True, False, True]]),
        "terminated": np.array([[False, False, False], [False, False, True]]),
    }


def test_compact_hand_worked() -> None:
    compact, truncated = compact_observations(**_hand_worked())
    np.testing.assert_array_equal(compact[..., 0], [[0, 1, 2, 3], [10, 11, 12, 13]])
    np.testing.assert_array_equal(truncated, [[5.0], [7.0]])  # row-major order of (b, t)
    assert compact.dtype == np.float32 and truncated.shape == (2, 1)


def test_compact_refuses_next_observations_that_do_not_chain() -> None:
    case = _hand_worked()
    case["next_observation"][1, 1, 0] = 99.0  # step (1, 1) is not done: must equal obs (1, 2)
    with pytest.raises(ValueError, match=r"differ at step \(1, 1\).*form='full'"):
        compact_observations(**case)
    case = _hand_worked()
    case["next_observation"][0, 1, 0] = 99.0  # a done step's next observation may be anything
    compact_observations(**case)


def test_compact_without_terminated_has_no_truncated_steps() -> None:
    case = _hand_worked()
    del case["terminated"]
    compact, truncated = compact_observations(**case)
    assert compact.shape == (2, 4, 1) and truncated.shape == (0, 1)


def test_compact_request_from_full_form_inputs() -> None:
    case = _hand_worked()
    request = prepare(
        form="compact",
        reward=np.zeros((2, 3), np.float32),
        done=case["done"],
        terminated=case["terminated"],
        observation=case["observation"],
        next_observation=case["next_observation"],
    ).request
    traj = request.trajectory
    assert traj.form == pb.TRAJECTORY_FORM_COMPACT
    np.testing.assert_array_equal(
        decode_numpy(traj.observation["observation"])[..., 0], [[0, 1, 2, 3], [10, 11, 12, 13]]
    )
    np.testing.assert_array_equal(decode_numpy(traj.next_observation["observation"]), [[5], [7]])


def test_compact_multi_dim_batch_and_torch_input() -> None:
    batch = make_batch(batch_shape=(2, 3), steps=5)
    compact, truncated = compact_observations(
        torch.from_numpy(batch.observation),
        torch.from_numpy(batch.next_observation),
        torch.from_numpy(batch.done),
        torch.from_numpy(batch.terminated),
    )
    assert compact.shape == (2, 3, 6, 4)
    np.testing.assert_array_equal(compact[..., :5, :], batch.observation)
    np.testing.assert_array_equal(compact[..., 5, :], batch.next_observation[..., 4, :])
    mask = batch.done & ~batch.terminated
    np.testing.assert_array_equal(truncated, batch.next_observation[mask])
    assert truncated.shape[0] == mask.sum() > 0


def test_already_compact_observations_are_sent_as_they_are() -> None:
    case = _hand_worked()
    compact, truncated = compact_observations(**case)
    common = {
        "form": "compact",
        "reward": np.zeros((2, 3), np.float32),
        "done": case["done"],
        "terminated": case["terminated"],
    }
    request = prepare(observation=compact, next_observation=truncated, **common).request
    traj = request.trajectory
    assert encode(compact) == traj.observation["observation"]
    assert encode(truncated) == traj.next_observation["observation"]
    with pytest.raises(ValueError, match="needed at the 2 truncated steps"):
        prepare(observation=compact, **common)
    common["terminated"] = case["done"]  # nothing truncated: next_observation may be left out
    traj = prepare(observation=compact, **common).request.trajectory
    assert list(traj.next_observation["observation"].shape) == [0, 1]


def test_compact_shape_errors() -> None:
    case = _hand_worked()
    with pytest.raises(ValueError, match=r"expected a leading \[2, 3\] \(full form\) or \[2, 4\]"):
        prepare(
            form="compact",
            reward=np.zeros((2, 3), np.float32),
            done=case["done"],
            observation=np.zeros((2, 5, 1), np.float32),
        )
    with pytest.raises(ValueError, match=r"next_observation\['observation'\]: expected the obs"):
        compact_observations(case["observation"], case["observation"][:, :2], case["done"])
    with pytest.raises(ValueError, match="needs next_observation"):
        prepare(
            form="compact",
            reward=np.zeros((2, 3), np.float32),
            done=case["done"],
            observation=case["observation"],
        )


def test_compact_roughly_halves_the_request() -> None:
    batch = make_batch(batch_shape=(8,), steps=64)
    full = prepare(form="full", **batch.arrays()).request.trajectory
    compact = prepare(form="compact", **batch.arrays()).request.trajectory
    obs_bytes = [
        sum(t.ByteSize() for t in (*traj.observation.values(), *traj.next_observation.values()))
        for traj in (full, compact)
    ]
    assert obs_bytes[1] < 0.6 * obs_bytes[0]  # [B, T+1] + K truncated rows instead of 2 × [B, T]
    assert compact.ByteSize() < 0.7 * full.ByteSize()


# ---- TensorDict ------------------------------------------------------------------------------


def test_tensordict_layout_is_read_like_torchrl() -> None:
    batch = make_batch()
    td = to_tensordict(batch)
    request = prepare(td, in_keys=["observation"], form="full").request
    traj = request.trajectory
    assert list(traj.reward.shape) == [3, 6]  # trailing 1 dropped
    np.testing.assert_array_equal(decode_numpy(traj.reward), batch.reward)
    np.testing.assert_array_equal(decode_numpy(traj.terminated), batch.terminated)
    np.testing.assert_array_equal(
        decode_numpy(traj.next_observation["observation"]), batch.next_observation
    )
    # action and log-probs only travel for V-trace; no state values in the TensorDict
    for name in ("action", "sample_log_prob", "state_value", "next_state_value"):
        assert not traj.HasField(name)


@pytest.mark.parametrize("log_prob_key", ["sample_log_prob", "action_log_prob"])
def test_tensordict_vtrace_sends_action_and_behaviour_log_prob(log_prob_key: str) -> None:
    batch = make_batch()
    td = to_tensordict(batch)
    td.rename_key_("sample_log_prob", log_prob_key)
    traj = prepare(td, estimator="vtrace", in_keys=["observation"]).request.trajectory
    np.testing.assert_array_equal(decode_numpy(traj.action), batch.action)
    np.testing.assert_array_equal(decode_numpy(traj.sample_log_prob), batch.sample_log_prob)
    del td[log_prob_key]
    with pytest.raises(KeyError, match="behaviour log-probability"):
        prepare(td, estimator="vtrace", in_keys=["observation"])


def test_tensordict_state_values_are_sent_when_both_are_present() -> None:
    td = to_tensordict(make_batch())
    td["state_value"] = torch.zeros(3, 6, 1)
    assert needs_input_keys(td, "gae", None, recompute_values=False)
    traj = prepare(td, in_keys=["observation"]).request.trajectory
    assert not traj.HasField("state_value")  # only one of the two: the server computes both
    td["next", "state_value"] = torch.ones(3, 6, 1)
    assert not needs_input_keys(td, "gae", None, recompute_values=False)
    assert needs_input_keys(td, "vtrace", None, recompute_values=False)
    assert needs_input_keys(td, "gae", None, recompute_values=True)
    traj = prepare(td).request.trajectory
    assert traj.HasField("state_value") and traj.HasField("next_state_value")
    assert len(traj.observation) == 0
    traj = prepare(td, recompute_values=True, in_keys=["observation"]).request.trajectory
    assert not traj.HasField("state_value") and len(traj.observation) == 1


def test_tensordict_errors() -> None:
    td = to_tensordict(make_batch())
    with pytest.raises(KeyError, match="no observation key 'pixels'"):
        prepare(td, in_keys=["pixels"])
    with pytest.raises(
        ValueError, match=r"expected shape \[3, 6, 1\] or \[3, 6\], got \[3, 6, 2\]"
    ):
        bad = td.clone(False)
        bad["next", "reward"] = torch.zeros(3, 6, 2)
        prepare(bad, in_keys=["observation"])
    with pytest.raises(KeyError, match="reward"):
        prepare(td.exclude(("next", "reward")), in_keys=["observation"])
    with pytest.raises(ValueError, match="batch_size"):
        prepare(TensorDict({}, []))


def test_tensordict_compact_form() -> None:
    batch = make_batch()
    traj = prepare(to_tensordict(batch), form="compact", in_keys=["observation"]).request.trajectory
    compact, truncated = compact_observations(
        batch.observation, batch.next_observation, batch.done, batch.terminated
    )
    np.testing.assert_array_equal(decode_numpy(traj.observation["observation"]), compact)
    np.testing.assert_array_equal(decode_numpy(traj.next_observation["observation"]), truncated)


# ---- response decoding ---------------------------------------------------------------------------


def _response(with_values: bool) -> pb.ComputeAdvantageResponse:
    r = pb.ComputeAdvantageResponse(
        advantage=encode(np.full((3, 6), 1.0, np.float32)),
        value_target=encode(np.full((3, 6), 2.0, np.float32)),
        model_name="demo",
        parameter_version=7,
    )
    r.timing.network_ms = 1.5
    if with_values:
        r.state_value.CopyFrom(encode(np.full((3, 6), 3.0, np.float32)))
        r.next_state_value.CopyFrom(encode(np.full((3, 6), 4.0, np.float32)))
    return r


@pytest.mark.parametrize("with_values", [True, False])
def test_decode_numpy_and_torch(with_values: bool) -> None:
    batch = make_batch()
    prepared = prepare(**batch.arrays())
    result = decode_response(_response(with_values), prepared.output)
    assert isinstance(result, AdvantageResult)
    assert isinstance(result.advantage, np.ndarray) and result.advantage.shape == (3, 6)
    assert (result.model_name, result.parameter_version) == ("demo", 7)
    assert result.timing.network_ms == 1.5
    assert (result.state_value is None) == (not with_values)
    prepared = prepare(reward=torch.from_numpy(batch.reward), done=batch.done)
    result = decode_response(_response(with_values), prepared.output)
    assert isinstance(result.value_target, torch.Tensor)
    assert float(result.value_target.sum()) == 36.0


def test_decode_tensordict_returns_a_new_tensordict_sharing_the_inputs() -> None:
    td = to_tensordict(make_batch())
    keys_before = set(td.keys(include_nested=True, leaves_only=True))
    prepared = prepare(td, in_keys=["observation"])
    out = decode_response(_response(True), prepared.output)
    assert out is not td
    assert set(td.keys(include_nested=True, leaves_only=True)) == keys_before  # not mutated
    assert out["observation"] is td["observation"]
    assert out["next", "reward"] is td["next", "reward"]
    assert out["advantage"].shape == (3, 6, 1)
    assert out["value_target"].shape == (3, 6, 1)
    assert float(out["state_value"].mean()) == 3.0
    assert float(out["next", "state_value"].mean()) == 4.0
    out = decode_response(_response(False), prepared.output)
    assert out.get("state_value", None) is None


# ---- form="auto" (the default) -------------------------------------------------------------------


def test_auto_form_sends_chained_observations_compact() -> None:
    batch = make_batch()
    auto = prepare(**batch.arrays()).request
    compact = prepare(form="compact", **batch.arrays()).request
    assert auto.trajectory.form == pb.TRAJECTORY_FORM_COMPACT
    assert auto.SerializeToString() == compact.SerializeToString()
    assert auto.ByteSize() < prepare(form="full", **batch.arrays()).request.ByteSize()


def test_auto_form_sends_unchained_observations_full() -> None:
    batch = make_batch()
    arrays = batch.arrays()
    broken = np.array(arrays["next_observation"], copy=True)
    not_done = np.argwhere(~np.asarray(arrays["done"])[:, :-1])[0]
    broken[tuple(not_done)] += 1.0  # step t not done, yet next_observation[t] != observation[t+1]
    arrays["next_observation"] = broken
    auto = prepare(**arrays).request
    full = prepare(form="full", **arrays).request
    assert auto.trajectory.form == pb.TRAJECTORY_FORM_FULL
    assert auto.SerializeToString() == full.SerializeToString()
    with pytest.raises(ValueError, match="compact form needs"):
        prepare(form="compact", **arrays)


def test_auto_form_without_observations_is_full() -> None:
    batch = make_batch()
    request = prepare(
        reward=batch.reward, done=batch.done, state_value=np.zeros((3, 6), np.float32),
        next_state_value=np.zeros((3, 6), np.float32),
    ).request  # fmt: skip
    assert request.trajectory.form == pb.TRAJECTORY_FORM_FULL
