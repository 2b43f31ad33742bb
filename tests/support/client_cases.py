"""Reference cases for the clients in other languages (Go, Java): requests in a plain JSON form
and the numbers TorchRL 0.14.1 gives for them.

`write_cases(path)` writes one JSON file that the Go and Java test suites read
(ADVANTAGE_TEST_CASES): each case holds the request's tensors (`{"dtype", "shape", "data"}`, data
flat in row-major order), the estimator or loss with its knobs, and the expected numbers with a
tolerance. The clients build each request from their own typed API, send it to a real server and
compare; the expected numbers come from TorchRL here, never from the server.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from tests.support.client_data import make_batch, to_tensordict, torchrl_reference

# One row per episode-end situation: a termination mid-row, a truncation mid-row, a truncated final
# step and a running final step (bootstrapped from next_state_value).
DONE = np.array([[False, True, False, False, False], [False, False, True, False, True]])
TERMINATED = np.array([[False, True, False, False, False], [False, False, False, False, False]])
SHAPE = list(DONE.shape)
# The case names, known before the cases are computed (tests parametrize on them).
ADVANTAGE_CASES = [
    "td0",
    "td1",
    "td_lambda",
    "gae",
    "gae_per_step_gamma",
    "vtrace",
    "gae_server_values",
]
LOSS_CASES = ["ppo_clip", "a2c"]


def _tensor(values: np.ndarray) -> dict[str, Any]:
    dtype = {"float32": "float32", "float64": "float64", "bool": "bool", "int64": "int64"}
    return {
        "dtype": dtype[str(values.dtype)],
        "shape": list(values.shape),
        "data": values.reshape(-1).tolist(),
    }


def _flat(values: np.ndarray) -> list[float]:
    return values.reshape(-1).tolist()


def _chained_values(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """V(s_t) and V(s_{t+1}) that chain within a segment (V-trace reads state_value[t + 1]):
    next_state_value[t] = state_value[t + 1] unless step t is done."""
    value = rng.normal(size=DONE.shape)
    following = rng.normal(size=DONE.shape)
    next_value = np.where(DONE, following, np.roll(value, -1, axis=-1))
    next_value[:, -1] = following[:, -1]
    return value, next_value


def advantage_cases() -> list[dict[str, Any]]:
    """Every estimator on client-sent float64 values, plus GAE with a per-step γ and GAE on the
    demo model's own values (observations sent)."""
    rng = np.random.default_rng(14)
    reward = rng.normal(size=DONE.shape)
    value, next_value = _chained_values(rng)
    log_mu = np.log(0.5) + 0.3 * rng.normal(size=DONE.shape)
    log_pi = log_mu + 0.4 * rng.normal(size=DONE.shape)
    per_step_gamma = rng.uniform(0.8, 0.99, size=DONE.shape)
    trajectory = {
        "reward": _tensor(reward),
        "done": _tensor(DONE),
        "terminated": _tensor(TERMINATED),
        "state_value": _tensor(value),
        "next_state_value": _tensor(next_value),
    }
    common = {
        "reward": reward,
        "done": DONE,
        "terminated": TERMINATED,
        "state_value": value,
        "next_state_value": next_value,
    }
    # γ, λ and c̄ exact in float32: TorchRL rounds Python-float coefficients to float32
    # (reference-notes), the server computes in the reward's float64.
    gamma, lmbda = 0.875, 0.75
    specs: list[tuple[str, str, dict[str, Any], dict[str, Any]]] = [
        ("td0", "td0", {"gamma": gamma}, {"gamma": gamma}),
        ("td1", "td1", {"gamma": gamma}, {"gamma": gamma}),
        (
            "td_lambda",
            "td_lambda",
            {"gamma": gamma, "lmbda": lmbda},
            {"gamma": gamma, "lmbda": lmbda},
        ),
        ("gae", "gae", {"gamma": gamma, "lmbda": lmbda}, {"gamma": gamma, "lmbda": lmbda}),
        (
            "gae_per_step_gamma",
            "gae",
            {"gamma": {"per_step": _tensor(per_step_gamma)}, "lmbda": 0.5},
            {"gamma": per_step_gamma, "lmbda": 0.5},
        ),
        (
            "vtrace",
            "vtrace",
            {"gamma": gamma, "rho_thresh": 1.0, "c_thresh": 0.75},
            {
                "gamma": gamma,
                "rho_thresh": 1.0,
                "c_thresh": 0.75,
                "log_pi": log_pi,
                "log_mu": log_mu,
            },
        ),
    ]
    cases = []
    for name, estimator, knobs, reference_knobs in specs:
        advantage, target = torchrl_reference(estimator, **common, **reference_knobs)
        case_trajectory = dict(trajectory)
        if estimator == "vtrace":
            case_trajectory["sample_log_prob"] = _tensor(log_mu)
            case_trajectory["log_prob"] = _tensor(log_pi)
        cases.append(
            {
                "name": name,
                "estimator": estimator,
                "knobs": knobs,
                "trajectory": case_trajectory,
                "expected": {"advantage": _flat(advantage), "value_target": _flat(target)},
                "tolerance": 1e-12,
            }
        )
    cases.append(_server_values_case())
    return cases


def _server_values_case() -> dict[str, Any]:
    """GAE on the demo model's values: V(s) from its value network, evaluated here in torch."""
    import torch

    from service.models.demo import demo_networks

    batch = make_batch((2,), steps=5, seed=3)
    value_net, _ = demo_networks()
    with torch.no_grad():
        value = value_net(torch.as_tensor(batch.observation)).squeeze(-1).double().numpy()
        next_value = value_net(torch.as_tensor(batch.next_observation)).squeeze(-1).double()
    next_value = next_value.numpy()
    advantage, target = torchrl_reference(
        "gae",
        reward=batch.reward.astype(np.float64),
        done=batch.done,
        terminated=batch.terminated,
        state_value=value,
        next_state_value=next_value,
        gamma=0.875,
        lmbda=0.75,
    )
    return {
        "name": "gae_server_values",
        "estimator": "gae",
        "knobs": {"gamma": 0.875, "lmbda": 0.75},
        "trajectory": {
            "observation": {"observation": _tensor(batch.observation)},
            "next_observation": {"observation": _tensor(batch.next_observation)},
            "reward": _tensor(batch.reward),
            "done": _tensor(batch.done),
            "terminated": _tensor(batch.terminated),
        },
        "expected": {
            "advantage": _flat(advantage),
            "value_target": _flat(target),
            "state_value": _flat(value),
        },
        "tolerance": 1e-5,  # float32 network and recursion
    }


def loss_cases() -> list[dict[str, Any]]:
    """ClipPPO and A2C (TorchRL's defaults, its own GAE(0.99, 0.95)) on the demo networks."""
    from tests.support.torchrl_reference import torchrl_loss

    batch = make_batch((3,), steps=6, seed=9)
    cases = []
    for loss in ("ppo_clip", "a2c"):
        module, _, _ = torchrl_loss(loss)
        out = module(to_tensordict(batch))
        metrics = {
            key: float(out[key].detach().mean())
            for key in out.keys()  # noqa: SIM118 - a TensorDict's keys
            if key.startswith("loss_") or key in ("entropy", "clip_fraction")
        }
        cases.append(
            {
                "name": loss,
                "loss": loss,
                "trajectory": {
                    "observation": {"observation": _tensor(batch.observation)},
                    "next_observation": {"observation": _tensor(batch.next_observation)},
                    "reward": _tensor(batch.reward),
                    "done": _tensor(batch.done),
                    "terminated": _tensor(batch.terminated),
                    "action": _tensor(batch.action),
                    "sample_log_prob": _tensor(batch.sample_log_prob),
                },
                "expected": {
                    "loss": sum(v for k, v in metrics.items() if k.startswith("loss_")),
                    "metrics": metrics,
                },
                "rel": 1e-5,
                "abs": 1e-6,
            }
        )
    return cases


def write_cases(path: Path) -> None:
    """Write the cases (ADVANTAGE_CASES, LOSS_CASES) to `path`."""
    cases = {"advantage": advantage_cases(), "loss": loss_cases()}
    names = {kind: [case["name"] for case in listed] for kind, listed in cases.items()}
    assert names == {"advantage": ADVANTAGE_CASES, "loss": LOSS_CASES}, names
    path.write_text(json.dumps(cases))
