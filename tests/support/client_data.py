"""Test data for the client tests: consistent trajectories and TorchRL reference estimates."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

OBS_DIM = 4  # the demo model's input: "observation", [4] float32
NUM_ACTIONS = 2


@dataclass
class Batch:
    """Full-form trajectories in the contract's array layout ([*B, T] per step)."""

    observation: np.ndarray  # [*B, T, 4]
    next_observation: np.ndarray  # [*B, T, 4]
    reward: np.ndarray  # [*B, T]
    done: np.ndarray  # [*B, T] bool
    terminated: np.ndarray  # [*B, T] bool
    action: np.ndarray  # [*B, T] int64
    sample_log_prob: np.ndarray  # [*B, T]

    def arrays(self, *, with_vtrace: bool = False) -> dict[str, np.ndarray]:
        """Keyword arguments of compute_advantage."""
        out = {
            "observation": self.observation,
            "next_observation": self.next_observation,
            "reward": self.reward,
            "done": self.done,
            "terminated": self.terminated,
        }
        if with_vtrace:
            out["action"] = self.action
            out["sample_log_prob"] = self.sample_log_prob
        return out


def make_batch(
    batch_shape: tuple[int, ...] = (3,), steps: int = 6, seed: int = 0, dtype: Any = np.float32
) -> Batch:
    """Trajectories whose observations chain: observation[t + 1] == next_observation[t] unless
    step t is done (then a reset observation). Holds terminated and truncated steps, including a
    truncated final step, so the compact form has K > 0 and a row where index T is unused."""
    rng = np.random.default_rng(seed)
    shape = (*batch_shape, steps)
    rows = int(np.prod(batch_shape))
    done = rng.random(shape) < 0.2
    terminated = done & (rng.random(shape) < 0.5)
    flat_done = done.reshape(rows, steps)
    flat_term = terminated.reshape(rows, steps)
    flat_done[0, 1] = flat_term[0, 1] = True  # terminated mid-row
    if rows > 1:
        flat_done[1, -1], flat_term[1, -1] = True, False  # truncated final step
    if rows > 2:
        flat_done[2, 2], flat_term[2, 2] = True, False  # truncated mid-row
        flat_done[2, -1] = flat_term[2, -1] = True  # terminated final step
    obs = np.empty((rows, steps, OBS_DIM), dtype=np.float32)
    nxt = rng.normal(size=(rows, steps, OBS_DIM)).astype(np.float32)
    obs[:, 0] = rng.normal(size=(rows, OBS_DIM))
    for t in range(1, steps):
        reset = rng.normal(size=(rows, OBS_DIM)).astype(np.float32)
        obs[:, t] = np.where(flat_done[:, t - 1, None], reset, nxt[:, t - 1])
    return Batch(
        observation=obs.reshape(*shape, OBS_DIM),
        next_observation=nxt.reshape(*shape, OBS_DIM),
        reward=rng.normal(size=shape).astype(dtype),
        done=done,
        terminated=terminated,
        action=rng.integers(0, NUM_ACTIONS, size=shape, dtype=np.int64),
        sample_log_prob=(np.log(0.5) + 0.3 * rng.normal(size=shape)).astype(dtype),
    )


def to_tensordict(batch: Batch, *, device: str = "cpu") -> Any:
    """The batch in TorchRL's TensorDict layout (per-step entries [*B, T, 1])."""
    import torch
    from tensordict import TensorDict

    def t(x: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(x.copy(), device=device)

    return TensorDict(
        {
            "observation": t(batch.observation),
            "action": t(batch.action),
            "sample_log_prob": t(batch.sample_log_prob),
            "next": {
                "observation": t(batch.next_observation),
                "reward": t(batch.reward[..., None]),
                "done": t(batch.done[..., None]),
                "terminated": t(batch.terminated[..., None]),
            },
        },
        batch_size=batch.reward.shape,
        device=device,
    )


def torchrl_reference(
    estimator: str,
    *,
    reward: Any,
    done: Any,
    terminated: Any,
    state_value: Any,
    next_state_value: Any,
    gamma: Any,
    lmbda: float = 0.95,
    log_pi: Any = None,
    log_mu: Any = None,
    rho_thresh: float = 1.0,
    c_thresh: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """(advantage, value_target) [*B, T] from TorchRL's functional estimators, in float64."""
    import torch
    from torchrl.objectives.value import functional as F

    def t(x: Any) -> torch.Tensor:
        x = torch.as_tensor(np.array(x))  # a writable copy
        return (x.double() if x.is_floating_point() else x).unsqueeze(-1)

    r, d, term = t(reward), t(done), t(terminated)
    v, nv = t(state_value), t(next_state_value)
    g = gamma if isinstance(gamma, float) else t(gamma)
    if estimator == "gae":
        adv, target = F.generalized_advantage_estimate(g, lmbda, v, nv, r, d, term)
    elif estimator == "td0":
        target = F.td0_return_estimate(g, nv, r, term, done=d)
        adv = target - v
    elif estimator == "td1":
        target = F.td1_return_estimate(g, nv, r, d, term)
        adv = target - v
    elif estimator == "td_lambda":
        target = F.td_lambda_return_estimate(g, lmbda, nv, r, d, term)
        adv = target - v
    elif estimator == "vtrace":
        adv, target = F.vtrace_advantage_estimate(
            g, t(log_pi), t(log_mu), v, nv, r, d, term, rho_thresh=rho_thresh, c_thresh=c_thresh
        )
    else:
        raise ValueError(estimator)
    return adv.squeeze(-1).numpy(), target.squeeze(-1).numpy()
