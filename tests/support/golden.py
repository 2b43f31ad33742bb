"""The golden vectors of `proto/testdata/` (format: proto/testdata/README.md): generator and reader.

    python -m tests.support.golden          # (re)write proto/testdata/
    python -m tests.support.golden --check  # exit 1 if proto/testdata/ differs from a fresh run

Each case's request is built here from its language-neutral `input` with the generated Python
messages (`service.pb`, no client library), serialised deterministically. The expected numbers
come from TorchRL 0.14.1 (estimators, PPO-family losses, run on the demo model's seeded networks)
and from DI-engine's IMPALA maths re-typed below; model descriptions are the demo model's
documented facts, written out by hand. Nothing here calls the server or a client.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from google.protobuf.message import Message

from service.pb.advantage.v1 import advantage_pb2 as pb

TESTDATA = Path(__file__).resolve().parents[2] / "proto" / "testdata"
CASES_FILE = "cases.json"
FORMAT_VERSION = 1

#: Wire dtype names used in `input` and `expect` ↔ the contract's enum and numpy.
DTYPES: dict[str, tuple[int, str]] = {
    "float32": (pb.DTYPE_FLOAT32, "<f4"),
    "float64": (pb.DTYPE_FLOAT64, "<f8"),
    "bool": (pb.DTYPE_BOOL, "|b1"),
    "int64": (pb.DTYPE_INT64, "<i8"),
}
FORMS = {"full": pb.TRAJECTORY_FORM_FULL, "compact": pb.TRAJECTORY_FORM_COMPACT}
#: Knobs that live in a loss's `PolicyLossOptions` message (`options`), not on the loss itself.
POLICY_OPTIONS = frozenset(pb.PolicyLossOptions.DESCRIPTOR.fields_by_name)
#: Tolerances: float32 numbers through the same networks and the same recursion.
FLOAT32_TOL = {"rtol": 1e-5, "atol": 1e-5}
FLOAT64_TOL = {"rtol": 1e-12, "atol": 1e-12}
LOSS_TOL = {"rtol": 1e-4, "atol": 1e-5}

TRAJECTORY_TENSORS = (
    "reward", "done", "terminated", "state_value", "next_state_value", "action",
    "sample_log_prob", "log_prob",
)  # fmt: skip


# ---- typed tensors (the JSON description) ----------------------------------------------------


def described(array: np.ndarray | torch.Tensor) -> dict[str, Any]:
    """{"dtype", "shape", "values"} of an array: values flat, row-major, as JSON numbers/bools."""
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu().numpy()
    names = {np.dtype(np_dtype): name for name, (_, np_dtype) in DTYPES.items()}
    name = names[array.dtype]
    flat = array.reshape(-1)
    if name == "bool":
        values: list[Any] = [bool(x) for x in flat]
    elif name == "int64":
        values = [int(x) for x in flat]
    else:
        values = [float(x) for x in flat]  # float32 widened exactly; repr round-trips
    return {"dtype": name, "shape": list(array.shape), "values": values}


def as_array(description: dict[str, Any]) -> np.ndarray:
    """The numpy array a typed description stands for."""
    _, np_dtype = DTYPES[description["dtype"]]
    return np.asarray(description["values"], dtype=np_dtype).reshape(description["shape"])


def wire_tensor(description: dict[str, Any]) -> pb.Tensor:
    """The contract's Tensor of a typed description (independent of service.wire and clients)."""
    dtype, _ = DTYPES[description["dtype"]]
    raw = as_array(description).tobytes()
    return pb.Tensor(dtype=dtype, shape=description["shape"], raw_data=raw)


# ---- input → request ---------------------------------------------------------------------------


def _trajectory(spec: dict[str, Any], form: str) -> pb.Trajectory:
    trajectory = pb.Trajectory(form=FORMS[form])
    for name in TRAJECTORY_TENSORS:
        if name in spec:
            getattr(trajectory, name).CopyFrom(wire_tensor(spec[name]))
    for field in ("observation", "next_observation"):
        for key, tensor in spec.get(field, {}).items():
            getattr(trajectory, field)[key].CopyFrom(wire_tensor(tensor))
    return trajectory


def _estimator(request: Message, spec: dict[str, Any] | None) -> None:
    if spec is None:
        return
    message = getattr(request, spec["kind"])
    message.SetInParent()
    for knob, value in spec.get("knobs", {}).items():
        if message.DESCRIPTOR.fields_by_name[knob].message_type is not None:  # a Coefficient
            getattr(message, knob).scalar = value
        else:
            setattr(message, knob, value)


def _loss(request: pb.ComputeLossRequest, spec: dict[str, Any] | None) -> None:
    if spec is None:
        return
    message = getattr(request, spec["kind"])
    message.SetInParent()
    for knob, value in spec.get("knobs", {}).items():
        if knob in POLICY_OPTIONS and spec["kind"] != "impala":
            if knob == "loss_critic_type":
                value = pb.CriticLoss.Value(value)
            setattr(message.options, knob, value)
        else:
            setattr(message, knob, value)


def build_request(rpc: str, spec: dict[str, Any]) -> Message:
    """The request message a case's `input` describes (README: "From input to request")."""
    if rpc == "ListModels":
        return pb.ListModelsRequest()
    if rpc == "GetModel":
        return pb.GetModelRequest(model_name=spec.get("model", ""))
    if rpc == "GetParameters":
        return pb.GetParametersRequest(
            model_name=spec.get("model", ""),
            max_chunk_bytes=spec.get("max_chunk_bytes", 0),
            prefixes=spec.get("prefixes", []),
        )
    trajectory = _trajectory(spec["trajectory"], spec.get("form", "full"))
    if rpc == "ComputeAdvantage":
        request = pb.ComputeAdvantageRequest(model_name=spec.get("model", ""))
        request.trajectory.CopyFrom(trajectory)
        _estimator(request, spec.get("estimator"))
        return request
    if rpc == "ComputeLoss":
        loss_request = pb.ComputeLossRequest(model_name=spec.get("model", ""))
        loss_request.trajectory.CopyFrom(trajectory)
        _estimator(loss_request, spec.get("estimator"))
        _loss(loss_request, spec.get("loss"))
        for key, tensor in spec.get("behaviour_distribution", {}).items():
            loss_request.behaviour_distribution[key].CopyFrom(wire_tensor(tensor))
        if spec.get("apply_update", False):
            loss_request.apply_update = True
        if "expected_parameter_version" in spec:
            loss_request.expected_parameter_version = spec["expected_parameter_version"]
        return loss_request
    raise ValueError(f"unknown rpc {rpc!r}")


# ---- the data -------------------------------------------------------------------------------


B, T, OBS = 2, 5, 4


@dataclass
class Data:
    """Full-form trajectories [B, T] whose observations chain within an episode."""

    observation: np.ndarray  # [B, T, 4] float32
    next_observation: np.ndarray  # [B, T, 4]
    reward: np.ndarray  # [B, T] float32
    done: np.ndarray
    terminated: np.ndarray
    action: np.ndarray  # int64
    sample_log_prob: np.ndarray  # float32

    @property
    def truncated(self) -> np.ndarray:
        return self.done & ~self.terminated

    def full(self) -> dict[str, Any]:
        return {
            "reward": described(self.reward),
            "done": described(self.done),
            "terminated": described(self.terminated),
            "observation": {"observation": described(self.observation)},
            "next_observation": {"observation": described(self.next_observation)},
        }

    def compact(self) -> dict[str, Any]:
        """Observations once, [B, T + 1, 4]; the truncated steps' next observations, [K, 4]."""
        last = self.next_observation[:, -1:]
        return {
            "reward": described(self.reward),
            "done": described(self.done),
            "terminated": described(self.terminated),
            "observation": {
                "observation": described(np.concatenate([self.observation, last], axis=1))
            },
            "next_observation": {"observation": described(self.next_observation[self.truncated])},
        }

    def with_behaviour(self, trajectory: dict[str, Any]) -> dict[str, Any]:
        return {
            **trajectory,
            "action": described(self.action),
            "sample_log_prob": described(self.sample_log_prob),
        }


def make_data(seed: int = 14, *, no_episode_end: bool = False) -> Data:
    """Small exactly-representable numbers (multiples of 1/32, 1/8); row 0 terminates at step 1,
    row 1 is truncated at step 2 and terminates at its final step 4 (unless `no_episode_end`)."""
    rng = np.random.default_rng(seed)
    done = np.zeros((B, T), dtype=bool)
    terminated = np.zeros((B, T), dtype=bool)
    if not no_episode_end:
        done[0, 1] = terminated[0, 1] = True
        done[1, 2] = True
        done[1, 4] = terminated[1, 4] = True

    def grid(*shape: int, step: float) -> np.ndarray:
        return (rng.integers(-64, 65, size=shape) * step).astype(np.float32)

    next_observation = grid(B, T, OBS, step=1 / 32)
    observation = np.empty_like(next_observation)
    observation[:, 0] = grid(B, OBS, step=1 / 32)
    for t in range(1, T):
        reset = grid(B, OBS, step=1 / 32)
        observation[:, t] = np.where(done[:, t - 1, None], reset, next_observation[:, t - 1])
    return Data(
        observation=observation,
        next_observation=next_observation,
        reward=grid(B, T, step=1 / 32),
        done=done,
        terminated=terminated,
        action=rng.integers(0, 2, size=(B, T)).astype(np.int64),
        sample_log_prob=np.log(rng.integers(2, 15, size=(B, T)) / 16).astype(np.float32),
    )


# ---- the references ---------------------------------------------------------------------------


def _torchrl_networks() -> tuple[Any, Any]:
    from tests.support.torchrl_reference import torchrl_modules

    return torchrl_modules()


def _values(data: Data) -> tuple[torch.Tensor, torch.Tensor]:
    """V(s_t), V(s_{t+1}) [B, T, 1] from the demo value network (TorchRL's ValueOperator)."""
    from tensordict import TensorDict

    value, _ = _torchrl_networks()
    with torch.no_grad():
        v = value(TensorDict({"observation": torch.from_numpy(data.observation)}, [B, T]))
        nv = value(TensorDict({"observation": torch.from_numpy(data.next_observation)}, [B, T]))
    return v["state_value"], nv["state_value"]


def _log_pi(data: Data) -> torch.Tensor:
    """log π(a_t | s_t) [B, T, 1] under the demo actor network."""
    from tensordict import TensorDict

    _, actor = _torchrl_networks()
    with torch.no_grad():
        td = TensorDict(
            {
                "observation": torch.from_numpy(data.observation),
                "action": torch.from_numpy(data.action),
            },
            [B, T],
        )
        dist = actor.get_dist(td)
        return dist.log_prob(td["action"]).unsqueeze(-1)


def torchrl_estimate(kind: str, knobs: dict[str, float], data: Data) -> dict[str, np.ndarray]:
    """advantage, value_target, state_value, next_state_value [B, T] as the server returns them:
    TorchRL's functional estimators on the demo value network's values."""
    from torchrl.objectives.value import functional as F

    v, nv = _values(data)
    r = torch.from_numpy(data.reward).unsqueeze(-1)
    d = torch.from_numpy(data.done).unsqueeze(-1)
    k = torch.from_numpy(data.terminated).unsqueeze(-1)
    gamma, lmbda = knobs.get("gamma", 0.99), knobs.get("lmbda", 0.95)
    if kind == "gae":
        adv, target = F.generalized_advantage_estimate(gamma, lmbda, v, nv, r, d, k)
    elif kind == "td0":
        target = F.td0_return_estimate(gamma, nv, r, k, done=d)
        adv = target - v
    elif kind == "td1":
        target = F.td1_return_estimate(gamma, nv, r, d, k)
        adv = target - v
    elif kind == "td_lambda":
        target = F.td_lambda_return_estimate(gamma, lmbda, nv, r, d, k)
        adv = target - v
    elif kind == "vtrace":
        log_mu = torch.from_numpy(data.sample_log_prob).unsqueeze(-1)
        adv, target = F.vtrace_advantage_estimate(
            gamma, _log_pi(data), log_mu, v, nv, r, d, k,
            rho_thresh=knobs.get("rho_thresh", 1.0), c_thresh=knobs.get("c_thresh", 1.0),
        )  # fmt: skip
    else:
        raise ValueError(kind)
    zero_at_terminal = torch.where(k, torch.zeros_like(nv), nv)  # the contract's next_state_value
    out = {"advantage": adv, "value_target": target, "state_value": v}
    out["next_state_value"] = zero_at_terminal
    return {key: value.squeeze(-1).detach().numpy() for key, value in out.items()}


def torchrl_loss_outputs(
    kind: str, knobs: dict[str, Any], data: Data, behaviour_logits: np.ndarray | None
) -> dict[str, float]:
    """TorchRL's loss terms (GAE γ 0.99, λ 0.95 advantage, as the case's estimator says)."""
    from tensordict import TensorDict
    from torchrl.objectives import A2CLoss, ClipPPOLoss, KLPENPPOLoss, PPOLoss, ReinforceLoss
    from torchrl.objectives.value import GAE

    value, actor = _torchrl_networks()
    classes: dict[str, Callable[..., Any]] = {
        "ppo_clip": ClipPPOLoss, "ppo": PPOLoss, "ppo_kl": KLPENPPOLoss,
        "a2c": A2CLoss, "reinforce": ReinforceLoss,
    }  # fmt: skip
    loss = classes[kind](actor, value, **knobs)
    if kind not in ("a2c", "reinforce"):
        loss.set_keys(sample_log_prob="sample_log_prob")
    loss.make_value_estimator(GAE, gamma=0.99, lmbda=0.95, value_network=value)
    td = TensorDict(
        {
            "observation": torch.from_numpy(data.observation),
            "action": torch.from_numpy(data.action),
            "sample_log_prob": torch.from_numpy(data.sample_log_prob),
            "next": {
                "observation": torch.from_numpy(data.next_observation),
                "reward": torch.from_numpy(data.reward).unsqueeze(-1),
                "done": torch.from_numpy(data.done).unsqueeze(-1),
                "terminated": torch.from_numpy(data.terminated).unsqueeze(-1),
            },
        },
        [B, T],
    )
    if behaviour_logits is not None:
        td["logits"] = torch.from_numpy(behaviour_logits)
    out = loss(td)
    terms = {key: float(out[key].detach()) for key in out.keys() if key.startswith("loss_")}  # noqa: SIM118
    result = {"loss": sum(terms.values()), **terms}
    for key in ("entropy", "kl_approx", "clip_fraction"):
        if key in out.keys():  # noqa: SIM118 - a TensorDict iterates rows, not keys
            result[key] = float(out[key].detach())
    return result


def impala_outputs(
    data: Data, *, gamma: float, critic_coeff: float, entropy_coeff: float
) -> dict[str, float]:
    """DI-engine's vtrace_error (ding/rl_utils/vtrace.py) re-typed, time-major, all clips 1 and
    λ 1, on trajectories with no episode end: policy −mean(log π·A_pg), value
    mean((V − vs)²), entropy mean(H); the server's loss_critic and loss_entropy carry the
    coefficients (critic_coeff·value, −entropy_coeff·H)."""
    from tensordict import TensorDict
    from torch.distributions import Categorical

    value_net, actor = _torchrl_networks()
    assert not data.done.any()
    with torch.no_grad():
        obs = torch.from_numpy(data.observation)
        values = value_net(TensorDict({"observation": obs}, [B, T]))["state_value"].squeeze(-1)
        last = torch.from_numpy(data.next_observation[:, -1])
        bootstrap = value_net(TensorDict({"observation": last}, [B]))["state_value"]
        logits = actor.module[0](TensorDict({"observation": obs}, [B, T]))["logits"]
    # Time-major (T, B); value is (T + 1, B).
    value = torch.cat([values, bootstrap], dim=1).T
    target = Categorical(logits=logits.transpose(0, 1))
    action = torch.from_numpy(data.action).T
    reward = torch.from_numpy(data.reward).T
    behaviour_log_prob = torch.from_numpy(data.sample_log_prob).T
    is_ = torch.exp(target.log_prob(action) - behaviour_log_prob)
    rhos, cs = is_.clamp(max=1.0), is_.clamp(max=1.0)
    deltas = rhos * (reward + gamma * value[1:] - value[:-1])
    vs = value[:-1].clone()
    acc = torch.zeros(B)
    for t in reversed(range(T)):
        acc = deltas[t] + gamma * 1.0 * cs[t] * acc
        vs[t] += acc
    vs_t_plus_1 = torch.cat([vs[1:], value[-1:]], 0)
    adv = is_.clamp(max=1.0) * (reward + gamma * vs_t_plus_1 - value[:-1])
    pg_loss = -(target.log_prob(action) * adv).mean()
    value_loss = ((value[:-1] - vs) ** 2).mean()
    entropy = target.entropy().mean()
    terms = {
        "loss_objective": float(pg_loss),
        "loss_critic": critic_coeff * float(value_loss),
        "loss_entropy": -entropy_coeff * float(entropy),
    }
    return {"loss": sum(terms.values()), **terms, "entropy": float(entropy)}


# ---- the cases --------------------------------------------------------------------------------


def _demo_model_info(version: int = 0) -> dict[str, Any]:
    """The demo model as the README documents it (4-dim observations, categorical 2 actions,
    γ 0.99, λ 0.95), in the contract's field names and enum value names."""
    return {
        "name": "demo",
        "inputs": [{"name": "observation", "shape": [4], "dtype": "DTYPE_FLOAT32"}],
        "has_value_network": True,
        "has_actor_network": True,
        "action": {
            "distribution": "DISTRIBUTION_CATEGORICAL",
            "shape": [],
            "dtype": "DTYPE_INT64",
            "num_actions": 2,
        },
        "parameter_version": version,
        "defaults": {"gamma": 0.99, "lmbda": 0.95},
        "parameter_dtype": "DTYPE_FLOAT32",
    }


def _ok_advantage(outputs: dict[str, np.ndarray], tol: dict[str, float]) -> dict[str, Any]:
    return {
        "status": "OK",
        "model_name": "demo",
        "parameter_version": 0,
        "tensors": {key: described(value) for key, value in outputs.items()},
        **tol,
    }


def _error(status: str, *contains: str) -> dict[str, Any]:
    return {"status": status, "message_contains": list(contains)}


def advantage_cases(data: Data) -> list[dict[str, Any]]:
    full, compact = data.full(), data.compact()
    estimators = {
        "td0": {"gamma": 0.9},
        "td1": {"gamma": 0.95},
        "td_lambda": {"gamma": 0.9, "lmbda": 0.8},
        "gae": {"gamma": 0.99, "lmbda": 0.95},
    }
    cases = []
    for kind, knobs in estimators.items():
        expect = _ok_advantage(torchrl_estimate(kind, knobs, data), FLOAT32_TOL)
        for form, trajectory in (("full", full), ("compact", compact)):
            cases.append({
                "name": f"{kind}_{form}",
                "rpc": "ComputeAdvantage",
                "input": {"model": "", "estimator": {"kind": kind, "knobs": knobs},
                          "form": form, "trajectory": trajectory},
                "expect": expect,
            })  # fmt: skip
    vtrace_knobs = {"gamma": 0.9, "rho_thresh": 1.0, "c_thresh": 1.0}
    expect = _ok_advantage(torchrl_estimate("vtrace", vtrace_knobs, data), FLOAT32_TOL)
    for form, trajectory in (("full", full), ("compact", compact)):
        cases.append({
            "name": f"vtrace_{form}",
            "rpc": "ComputeAdvantage",
            "input": {"model": "", "estimator": {"kind": "vtrace", "knobs": vtrace_knobs},
                      "form": form, "trajectory": data.with_behaviour(trajectory)},
            "expect": expect,
        })  # fmt: skip
    cases.append({
        "name": "gae_model_defaults",
        "rpc": "ComputeAdvantage",
        "input": {"model": "demo", "estimator": {"kind": "gae", "knobs": {}}, "form": "full",
                  "trajectory": full},
        "expect": _ok_advantage(torchrl_estimate("gae", {}, data), FLOAT32_TOL),
    })  # fmt: skip
    cases.append(td0_client_values_case())
    return cases


def td0_client_values_case() -> dict[str, Any]:
    """TD(0) on client-sent float64 values, worked by hand (no network):
    G = r + γ(1 − terminated)V′, A = G − V; γ = 0.5.
    row 0: r = [1, 2, 3], V = [0.5, 1, 2], V′ = [1, 2, 4], terminated at step 1, done at 1
      G = [1 + 0.5·1, 2 + 0, 3 + 0.5·4] = [1.5, 2, 5]; A = [1, 1, 3]."""
    reward = np.array([[1.0, 2.0, 3.0]])
    state_value = np.array([[0.5, 1.0, 2.0]])
    next_state_value = np.array([[1.0, 2.0, 4.0]])
    done = np.array([[False, True, False]])
    return {
        "name": "td0_client_values_float64",
        "rpc": "ComputeAdvantage",
        "input": {
            "model": "",
            "estimator": {"kind": "td0", "knobs": {"gamma": 0.5}},
            "form": "full",
            "trajectory": {
                "reward": described(reward),
                "done": described(done),
                "terminated": described(done.copy()),
                "state_value": described(state_value),
                "next_state_value": described(next_state_value),
            },
        },
        "expect": {
            "status": "OK",
            "model_name": "demo",
            "parameter_version": 0,
            "tensors": {
                "advantage": described(np.array([[1.0, 1.0, 3.0]])),
                "value_target": described(np.array([[1.5, 2.0, 5.0]])),
            },
            "absent": ["state_value", "next_state_value"],
            **FLOAT64_TOL,
        },
    }


def loss_cases(data: Data, calm: Data) -> list[dict[str, Any]]:
    gae = {"kind": "gae", "knobs": {"gamma": 0.99, "lmbda": 0.95}}
    trajectory = data.with_behaviour(data.full())
    rng = np.random.default_rng(7)
    behaviour_logits = (rng.integers(-32, 33, size=(B, T, 2)) / 16).astype(np.float32)
    losses: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
        ("ppo_clip", {"clip_epsilon": 0.1}, {"clip_epsilon": 0.1}),
        ("ppo", {}, {}),
        ("ppo_kl", {}, {}),
        ("a2c", {"entropy_coeff": 0.05}, {"entropy_coeff": 0.05}),
        ("reinforce", {}, {}),
    ]
    cases = []
    for kind, knobs, torchrl_knobs in losses:
        spec: dict[str, Any] = {
            "model": "",
            "estimator": gae,
            "loss": {"kind": kind, "knobs": knobs},
            "form": "full",
            "trajectory": trajectory,
        }
        logits = None
        if kind == "ppo_kl":
            logits = behaviour_logits
            spec["behaviour_distribution"] = {"logits": described(logits)}
        expected = torchrl_loss_outputs(kind, torchrl_knobs, data, logits)
        cases.append({
            "name": f"loss_{kind}",
            "rpc": "ComputeLoss",
            "input": spec,
            "expect": {"status": "OK", "model_name": "demo", "parameter_version": 0,
                       "updated": False, "loss": expected.pop("loss"), "metrics": expected,
                       **LOSS_TOL},
        })  # fmt: skip
    impala_knobs = {"gamma": 0.9, "critic_coeff": 0.5}
    expected = impala_outputs(calm, gamma=0.9, critic_coeff=0.5, entropy_coeff=0.01)
    cases.append({
        "name": "loss_impala",
        "rpc": "ComputeLoss",
        "input": {"model": "", "loss": {"kind": "impala", "knobs": impala_knobs}, "form": "full",
                  "trajectory": calm.with_behaviour(calm.full())},
        "expect": {"status": "OK", "model_name": "demo", "parameter_version": 0, "updated": False,
                   "loss": expected.pop("loss"), "metrics": expected, **LOSS_TOL},
    })  # fmt: skip
    return cases


def model_cases() -> list[dict[str, Any]]:
    from service.models.demo import demo_networks

    value, _ = demo_networks()  # the seeded construction the demo model documents
    head = {
        f"value_network.{name}": described(parameter.detach())
        for name, parameter in value.named_parameters()
        if name.startswith("4.")
    }
    return [
        {"name": "list_models", "rpc": "ListModels", "input": {},
         "expect": {"status": "OK", "models": [_demo_model_info()]}},
        {"name": "get_model_default", "rpc": "GetModel", "input": {"model": ""},
         "expect": {"status": "OK", "model": _demo_model_info()}},
        {"name": "get_parameters_value_head", "rpc": "GetParameters",
         "input": {"model": "", "prefixes": ["value_network.4."], "max_chunk_bytes": 128},
         "expect": {"status": "OK", "parameter_version": 0, "parameters": head,
                    "rtol": 0.0, "atol": 0.0}},
    ]  # fmt: skip


def error_cases(data: Data) -> list[dict[str, Any]]:
    full = data.full()
    gae = {"kind": "gae", "knobs": {"gamma": 0.99, "lmbda": 0.95}}
    terminated_not_done = np.zeros((B, T), dtype=bool)
    terminated_not_done[0, 3] = True
    narrow = {"observation": described(data.observation[..., :3])}
    return [
        {"name": "error_unknown_model", "rpc": "ComputeAdvantage",
         "input": {"model": "no-such-model", "estimator": gae, "form": "full", "trajectory": full},
         "expect": _error("NOT_FOUND", "no-such-model")},
        {"name": "error_terminated_without_done", "rpc": "ComputeAdvantage",
         "input": {"model": "", "estimator": gae, "form": "full",
                   "trajectory": {**full, "done": described(np.zeros((B, T), dtype=bool)),
                                  "terminated": described(terminated_not_done)}},
         "expect": _error("INVALID_ARGUMENT", "trajectory.terminated")},
        {"name": "error_observation_shape", "rpc": "ComputeAdvantage",
         "input": {"model": "", "estimator": gae, "form": "full",
                   "trajectory": {**full, "observation": narrow,
                                  "next_observation": {"observation": described(
                                      data.next_observation[..., :3])}}},
         "expect": _error("INVALID_ARGUMENT", "observation")},
        {"name": "error_get_model_unknown", "rpc": "GetModel", "input": {"model": "no-such-model"},
         "expect": _error("NOT_FOUND", "no-such-model")},
        {"name": "error_loss_stale_expected_version", "rpc": "ComputeLoss",
         "input": {"model": "", "estimator": gae, "loss": {"kind": "a2c", "knobs": {}},
                   "form": "full", "trajectory": data.with_behaviour(full), "apply_update": True,
                   "expected_parameter_version": 99},
         "expect": _error("FAILED_PRECONDITION", "expected_parameter_version")},
    ]  # fmt: skip


def build_cases() -> list[dict[str, Any]]:
    """Every case, in file order, each with its `request` file name."""
    data = make_data()
    calm = make_data(seed=15, no_episode_end=True)
    cases = [*advantage_cases(data), *loss_cases(data, calm), *model_cases(), *error_cases(data)]
    for case in cases:
        case["request"] = f"{case['name']}.binpb"
    return [
        {key: case[key] for key in ("name", "rpc", "request", "input", "expect")} for case in cases
    ]


def render() -> dict[str, bytes]:
    """File name → content of every file in proto/testdata/ except README.md."""
    cases = build_cases()
    files = {
        case["request"]: build_request(case["rpc"], case["input"]).SerializeToString(
            deterministic=True
        )
        for case in cases
    }
    document = {"format": FORMAT_VERSION, "cases": cases}
    files[CASES_FILE] = (json.dumps(document, indent=1, allow_nan=False) + "\n").encode()
    return files


# ---- reading (for the tests) --------------------------------------------------------------------


def load_cases(folder: Path = TESTDATA) -> list[dict[str, Any]]:
    """The cases of cases.json, each with `request_bytes` read from its file."""
    document = json.loads((folder / CASES_FILE).read_text())
    if document["format"] != FORMAT_VERSION:
        raise ValueError(f"golden format {document['format']}, expected {FORMAT_VERSION}")
    for case in document["cases"]:
        case["request_bytes"] = (folder / case["request"]).read_bytes()
    return document["cases"]


def request_type(rpc: str) -> type[Message]:
    """The request message class of an RPC."""
    method = pb.DESCRIPTOR.services_by_name["AdvantageService"].methods_by_name[rpc]
    return getattr(pb, method.input_type.name)


def close(actual: float, expected: float, rtol: float, atol: float) -> bool:
    """|actual − expected| ≤ atol + rtol·|expected| (numpy's isclose rule), NaN never close."""
    return math.isfinite(actual) and abs(actual - expected) <= atol + rtol * abs(expected)


def _tensor_problems(
    where: str, actual: dict[str, Any] | None, expected: dict[str, Any], rtol: float, atol: float
) -> list[str]:
    if actual is None:
        return [f"{where}: missing"]
    if actual["dtype"] != expected["dtype"] or list(actual["shape"]) != expected["shape"]:
        return [
            f"{where}: {actual['dtype']} {list(actual['shape'])}, expected "
            f"{expected['dtype']} {expected['shape']}"
        ]
    values = [float(x) for x in actual["values"]]
    wrong = [
        f"[{i}] {a!r} vs {e!r}"
        for i, (a, e) in enumerate(zip(values, expected["values"], strict=True))
        if not close(a, float(e), rtol, atol)
    ]
    return [f"{where}: {len(wrong)} values off: {', '.join(wrong[:4])}"] if wrong else []


def compare_answer(case: dict[str, Any], answer: dict[str, Any]) -> list[str]:
    """What in a client's `answer` disagrees with the case's `expect` (empty: it passes).

    `answer` is the client's result in the shape of `expect`: `status` (canonical name) and
    `message` for an error; else the fields `expect` lists, tensors as typed descriptions
    (`described`), model descriptions in the proto's field and enum names, and `absent`: the
    response fields the client reports unset."""
    expect = case["expect"]
    if answer.get("status") != expect["status"]:
        return [f"status {answer.get('status')} ({answer.get('message', '')}), expected "
                f"{expect['status']}"]  # fmt: skip
    if expect["status"] != "OK":
        message = answer.get("message", "")
        return [f"message {message!r} lacks {part!r}" for part in expect["message_contains"]
                if part not in message]  # fmt: skip
    problems = []
    rtol, atol = expect.get("rtol", 0.0), expect.get("atol", 0.0)
    for key in ("model_name", "parameter_version", "updated", "models", "model"):
        if key in expect and answer.get(key) != expect[key]:
            problems.append(f"{key}: {answer.get(key)!r}, expected {expect[key]!r}")
    for field, tensor in expect.get("tensors", {}).items():
        problems += _tensor_problems(
            field, answer.get("tensors", {}).get(field), tensor, rtol, atol
        )
    for field in expect.get("absent", []):
        if field not in answer.get("absent", []):
            problems.append(f"{field}: expected unset")
    if "loss" in expect and not close(
        float(answer.get("loss", math.nan)), expect["loss"], rtol, atol
    ):
        problems.append(f"loss: {answer.get('loss')!r}, expected {expect['loss']!r}")
    for name, value in expect.get("metrics", {}).items():
        actual = float(answer.get("metrics", {}).get(name, math.nan))
        if not close(actual, value, rtol, atol):
            problems.append(f"metrics[{name}]: {actual!r}, expected {value!r}")
    if "parameters" in expect:
        parameters = answer.get("parameters", {})
        if sorted(parameters) != sorted(expect["parameters"]):
            problems.append(
                f"parameters: {sorted(parameters)}, expected {sorted(expect['parameters'])}"
            )
        for name, tensor in expect["parameters"].items():
            problems += _tensor_problems(name, parameters.get(name), tensor, rtol, atol)
    return problems


# ---- check --------------------------------------------------------------------------------------


def _numbers_match(old: Any, new: Any, path: str, problems: list[str]) -> None:
    """Structure equal, strings/bools/ints equal, floats within 1e-6 relative + 1e-7 absolute
    (a machine's last-ulp differences in the float32 networks, not a change of meaning)."""
    if isinstance(new, dict) and isinstance(old, dict):
        if old.keys() != new.keys():
            problems.append(f"{path}: keys {sorted(old)} != {sorted(new)}")
            return
        for key in new:
            _numbers_match(old[key], new[key], f"{path}.{key}", problems)
    elif isinstance(new, list) and isinstance(old, list):
        if len(old) != len(new):
            problems.append(f"{path}: length {len(old)} != {len(new)}")
            return
        for i, (a, b) in enumerate(zip(old, new, strict=True)):
            _numbers_match(a, b, f"{path}[{i}]", problems)
    elif isinstance(new, float) and isinstance(old, int | float) and not isinstance(old, bool):
        if not close(float(old), new, 1e-6, 1e-7):
            problems.append(f"{path}: {old} != {new}")
    elif old != new or type(old) is not type(new):
        problems.append(f"{path}: {old!r} != {new!r}")


def check(folder: Path = TESTDATA) -> list[str]:
    """What differs between `folder` and a fresh generation (empty: up to date)."""
    fresh = render()
    problems = []
    present = {p.name for p in folder.iterdir() if p.name != "README.md"}
    for name in sorted(present - fresh.keys()):
        problems.append(f"{name}: not generated any more (delete it)")
    for name, content in fresh.items():
        path = folder / name
        if not path.exists():
            problems.append(f"{name}: missing")
        elif name == CASES_FILE:
            _numbers_match(json.loads(path.read_text()), json.loads(content), "cases", problems)
        elif path.read_bytes() != content:
            problems.append(f"{name}: request bytes differ")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args(argv)
    if args.check:
        problems = check()
        for problem in problems:
            print(problem, file=sys.stderr)
        if problems:
            print("proto/testdata/ is stale: run python -m tests.support.golden", file=sys.stderr)
        return 1 if problems else 0
    TESTDATA.mkdir(parents=True, exist_ok=True)
    for old in TESTDATA.glob("*.binpb"):
        old.unlink()
    for name, content in render().items():
        (TESTDATA / name).write_bytes(content)
    print(f"wrote {len(list(TESTDATA.glob('*.binpb')))} cases to {TESTDATA}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
