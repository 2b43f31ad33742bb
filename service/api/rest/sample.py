"""Generated sample trajectories for the /debug page (a valid POST /v1/advantage body)."""

from __future__ import annotations

import math
from typing import Any

import torch

from service.models.manifest import ActionHeadSpec, ActionSpec
from service.models.model import Model

MAX_SAMPLE_STEPS = 1000


def episode_ends(steps: int) -> tuple[int | None, int | None]:
    """(terminal step, truncated step) of a sample of `steps` steps (None when too short)."""
    if steps < 4:
        return None, None
    return round(steps * 0.3), round(steps * 0.65)


def _input(shape: tuple[int, ...], dtype: torch.dtype, generator: torch.Generator) -> torch.Tensor:
    if dtype.is_floating_point:
        return torch.randn(shape, generator=generator).to(dtype)
    if dtype is torch.bool:
        return torch.rand(shape, generator=generator) > 0.5
    return torch.randint(0, 10, shape, generator=generator).to(dtype)


def sample_request(model: Model, steps: int = 24, seed: int = 0) -> dict[str, Any]:
    """One trajectory [T] for `model` with a terminal and a truncated episode end.

    The terminal step is at round(0.3·T), the truncated one at round(0.65·T) (see
    `episode_ends`); observations are random, rewards small noise plus +1 at the terminal step.
    """
    if not 1 <= steps <= MAX_SAMPLE_STEPS:
        raise ValueError(f"steps: expected 1 to {MAX_SAMPLE_STEPS}, got {steps}")
    generator = torch.Generator().manual_seed(seed)
    terminal, truncated = episode_ends(steps)
    done = torch.zeros(steps, dtype=torch.bool)
    terminated = torch.zeros(steps, dtype=torch.bool)
    for step in (terminal, truncated):
        if step is not None:
            done[step] = True
    if terminal is not None:
        terminated[terminal] = True
    reward = 0.1 * torch.randn(steps, generator=generator) + 0.05
    if terminal is not None:
        reward[terminal] = 1.0
    trajectory: dict[str, Any] = {}
    for spec in model.manifest.inputs:
        dtype = model.input_dtype(spec.name)
        # T + 1 observations: after a done step the next row is a fresh episode's first one, and
        # the true next observation at a done step is a separate draw.
        chain = _input((steps + 1, *spec.shape), dtype, generator)
        following = chain[1:].clone()
        fresh = _input((steps, *spec.shape), dtype, generator)
        following[done] = fresh[done]
        trajectory[spec.name] = chain[:-1].tolist()
        trajectory[f"next.{spec.name}"] = following.tolist()
    trajectory["next.reward"] = reward.tolist()
    trajectory["next.done"] = done.tolist()
    trajectory["next.terminated"] = terminated.tolist()
    if model.value_network is None:
        trajectory["state_value"] = torch.randn(steps, generator=generator).tolist()
        trajectory["next.state_value"] = torch.randn(steps, generator=generator).tolist()
    action = model.manifest.action
    if action is not None and model.actor_network is not None:
        if action.distribution == "composite":  # per head: its actions and log-probability
            for head in action.heads:
                chosen, log_prob = _sample_action(head, steps, generator)
                trajectory[head.name] = chosen.tolist()
                trajectory[f"{head.name}_log_prob"] = log_prob.tolist()
        else:
            chosen, log_prob = _sample_action(action, steps, generator)
            trajectory["action"] = chosen.tolist()
            trajectory["sample_log_prob"] = log_prob.tolist()
    return {"model_name": model.name, "estimator": {"name": "gae"}, "trajectory": trajectory}


def _sample_action(
    action: ActionSpec | ActionHeadSpec, steps: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Actions in the support of one head (or a single-head actor), and a plausible log-prob."""
    if action.distribution in ("categorical", "one_hot_categorical"):
        chosen = torch.randint(0, action.num_actions, (steps,), generator=generator)
        if action.distribution == "one_hot_categorical":
            chosen = torch.nn.functional.one_hot(chosen, action.num_actions).float()
        return chosen, torch.full((steps,), -math.log(action.num_actions))
    if action.distribution == "bernoulli":
        chosen = torch.randint(0, 2, (steps, *action.shape), generator=generator).float()
        return chosen, torch.full((steps,), -math.log(2) * math.prod(action.shape))
    chosen = torch.rand((steps, *action.shape), generator=generator) * 1.8 - 0.9
    if action.distribution == "tanh_normal":
        chosen = action.low + (chosen + 1) / 2 * (action.high - action.low)
    return chosen, torch.full((steps,), -1.0 * max(1, math.prod(action.shape)))
