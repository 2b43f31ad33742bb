"""Remote PPO on CartPole: actors collect, advantage-service computes advantages and learns.

    python examples/remote_ppo/train.py                 # exports a model, starts a server
    python examples/remote_ppo/train.py --target host:50051 --model cartpole   # an existing one

Each iteration:

1. every actor pulls the actor network's parameters (GetParameters) into its local copy;
2. every actor steps its own gymnasium CartPole-v1 for ``--steps`` steps with that policy
   (episodes run on across iterations; sampling with its own seeded generator);
3. the learner sends the batch [actors, steps] once (ComputeAdvantage, compact form): the
   server's critic gives V, GAE gives the advantages and value targets;
4. the learner runs ``--epochs`` passes of shuffled minibatches, each one ComputeLoss with the
   precomputed advantage and ``apply_update=True``: ClipPPO's loss, backward and an Adam step,
   on the server, chained by ``expected_parameter_version`` (compare-and-set).

It stops when the mean return of the last 100 episodes reaches ``--solved`` (gymnasium's
CartPole-v1 threshold, 475, by default), or after ``--max-iterations``. It writes
``learning_curve.csv`` (one row per iteration) and ``learning_curve.png`` (return against
environment steps; time per iteration split into rollout, RPC and server compute) into
``--out``, shows a tqdm progress bar (``--quiet``: none) and prints one final line.

Without ``--target`` it exports its own actor-critic (two 64-unit tanh MLPs) with
`service.models.export.export_model` into a temporary model repository and serves it with
``python -m service.cli serve`` on a free loopback port, so it needs the server installed
(``make install``) and runs from the repository root or with it on PYTHONPATH.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from advantage_client import GAE, AdvantageClient, ClipPPO
from torch import nn

OBSERVATION_SIZE = 4
ACTIONS = 2
HIDDEN = 64
ROOT = Path(__file__).resolve().parents[2]


def actor_network() -> nn.Module:
    return nn.Sequential(
        nn.Linear(OBSERVATION_SIZE, HIDDEN), nn.Tanh(),
        nn.Linear(HIDDEN, HIDDEN), nn.Tanh(),
        nn.Linear(HIDDEN, ACTIONS),
    )  # fmt: skip


def value_network() -> nn.Module:
    return nn.Sequential(
        nn.Linear(OBSERVATION_SIZE, HIDDEN), nn.Tanh(),
        nn.Linear(HIDDEN, HIDDEN), nn.Tanh(),
        nn.Linear(HIDDEN, 1),
    )  # fmt: skip


# --------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------


def export_cartpole_model(repository: Path, name: str, seed: int, lr: float) -> None:
    """Write a fresh, seeded CartPole actor-critic into `repository`/`name` (Adam, clipped
    gradient norm)."""
    from service.models.export import export_model
    from service.models.manifest import ActionSpec, InputSpec, OptimizerSpec

    torch.manual_seed(seed)
    actor, value = actor_network(), value_network()
    with torch.no_grad():  # a small last layer: a near-uniform first policy (as CleanRL's)
        actor[-1].weight.mul_(0.01)
    folder = repository / name
    manifest = export_model(
        folder,
        name,
        [InputSpec(name="observation", shape=(OBSERVATION_SIZE,))],
        value_network=value,
        actor_network=actor,
        action=ActionSpec(distribution="categorical", num_actions=ACTIONS),
        file_format="torchscript",
    )
    optimizer = OptimizerSpec(name="adam", lr=lr, max_grad_norm=0.5)
    dataclasses.replace(manifest, optimizer=optimizer).save(folder)


def _drain(stream: Iterator[str]) -> None:
    for _ in stream:
        pass


@contextmanager
def serve(repository: Path) -> Iterator[str]:
    """``python -m service.cli serve`` on a free loopback port; yields its "127.0.0.1:PORT"."""
    command = [sys.executable, "-m", "service.cli", "serve", "--host", "127.0.0.1", "--port", "0"]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "ADVANTAGE_MODEL_REPOSITORY": str(repository),
        "ADVANTAGE_REST_PORT": "0",
        "ADVANTAGE_DEVICE": "cpu",
    }
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env)
    try:
        port = None
        seen = []
        for line in process.stderr:
            seen.append(line)
            found = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
            if found:
                port = int(found.group(1))
                break
        if port is None:
            raise RuntimeError("the server did not start:\n" + "".join(seen[-20:]))
        # Keep reading its log so that a full pipe never blocks it.
        threading.Thread(target=_drain, args=(process.stderr,), daemon=True).start()
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


# --------------------------------------------------------------------------------------------
# Actors
# --------------------------------------------------------------------------------------------


@dataclass
class Segment:
    """One actor's steps of one iteration, time last ([steps] per-step, [steps, 4] obs)."""

    observation: np.ndarray
    next_observation: np.ndarray
    action: np.ndarray
    log_prob: np.ndarray
    reward: np.ndarray
    done: np.ndarray
    terminated: np.ndarray
    episode_returns: list[float]


STEP_ARRAYS = tuple(f.name for f in dataclasses.fields(Segment) if f.name != "episode_returns")


@dataclass
class Actor:
    """A CartPole-v1 environment, a local copy of the policy, its own random stream."""

    index: int
    seed: int
    policy: nn.Module = field(default_factory=actor_network)

    def __post_init__(self) -> None:
        self.env = gym.make("CartPole-v1")
        self.observation, _ = self.env.reset(seed=self.seed)
        self.generator = torch.Generator().manual_seed(self.seed)
        self.episode_return = 0.0

    def pull(self, client: AdvantageClient, model: str) -> int:
        """GetParameters: the server's actor network into the local policy; its version."""
        return client.load_into(self.policy, "actor_network.", model=model)

    @torch.no_grad()
    def collect(self, steps: int) -> Segment:
        obs = np.empty((steps, OBSERVATION_SIZE), np.float32)
        next_obs = np.empty((steps, OBSERVATION_SIZE), np.float32)
        action = np.empty(steps, np.int64)
        log_prob = np.empty(steps, np.float32)
        reward = np.empty(steps, np.float32)
        done = np.zeros(steps, bool)
        terminated = np.zeros(steps, bool)
        returns = []
        for t in range(steps):
            obs[t] = self.observation
            logits = self.policy(torch.from_numpy(obs[t]))
            log_p = torch.log_softmax(logits, -1)
            a = int(torch.multinomial(log_p.exp(), 1, generator=self.generator))
            action[t], log_prob[t] = a, float(log_p[a])
            observation, r, term, trunc, _ = self.env.step(a)
            next_obs[t], reward[t] = observation, r
            terminated[t], done[t] = term, term or trunc
            self.episode_return += float(r)
            if done[t]:
                returns.append(self.episode_return)
                self.episode_return = 0.0
                observation, _ = self.env.reset()
            self.observation = observation
        return Segment(obs, next_obs, action, log_prob, reward, done, terminated, returns)


# --------------------------------------------------------------------------------------------
# The learner
# --------------------------------------------------------------------------------------------


@dataclass
class Row:
    """One iteration of the CSV."""

    iteration: int
    env_steps: int
    episodes: int
    mean_return: float  # episodes that ended in this iteration
    mean_return_100: float  # the last 100 episodes
    pulled_version: int  # the policy version the actors pulled and acted with (the oldest)
    parameter_version: int  # the version after this iteration's updates
    rollout_s: float  # actors stepping their environments with their local policy
    rpc_s: float  # RPC wall time not spent computing on the server (transport, (de)serialising)
    server_s: float  # server compute reported by the responses (decode, networks, estimator)
    loss_objective: float
    loss_critic: float
    entropy: float


def _server_seconds(timing) -> float:
    return (timing.decode_ms + timing.network_ms + timing.estimator_ms + timing.encode_ms) / 1e3


def train(args: argparse.Namespace, target: str) -> list[Row]:
    torch.set_num_threads(1)  # the actors' tiny forward passes; the server has the cores
    actors = [Actor(i, args.seed * 1000 + i) for i in range(args.actors)]
    shuffle = np.random.default_rng(args.seed)
    loss = ClipPPO(
        clip_epsilon=0.2,
        entropy_coeff=args.entropy_coeff,
        critic_coeff=0.5,
        loss_critic_type="l2",
        normalize_advantage=True,
    )
    estimator = GAE(gamma=0.99, lmbda=0.95)
    rows: list[Row] = []
    recent: deque[float] = deque(maxlen=100)
    env_steps = 0
    progress = _progress(args)
    with AdvantageClient(target, timeout=60) as client, ThreadPoolExecutor(args.actors) as pool:
        version = client.get_model(args.model).parameter_version
        for iteration in range(1, args.max_iterations + 1):
            start = time.perf_counter()
            pulled_versions = set(pool.map(lambda a: a.pull(client, args.model), actors))
            pulled = time.perf_counter()
            segments = list(pool.map(lambda a: a.collect(args.steps), actors))
            collected = time.perf_counter()
            batch = {name: np.stack([getattr(s, name) for s in segments]) for name in STEP_ARRAYS}
            result = client.compute_advantage(
                reward=batch["reward"],
                done=batch["done"],
                terminated=batch["terminated"],
                observation=batch["observation"],
                next_observation=batch["next_observation"],
                estimator=estimator,
                model=args.model,
                form="compact",
            )
            server = _server_seconds(result.timing)
            flat = {k: v.reshape(-1, *v.shape[2:]) for k, v in batch.items()}
            flat["advantage"] = result.advantage.reshape(-1)
            flat["value_target"] = result.value_target.reshape(-1)
            metrics: list[dict[str, float]] = []
            for _ in range(args.epochs):
                order = shuffle.permutation(len(flat["reward"]))
                for index in np.array_split(order, args.minibatches):
                    # Each step is a segment of length 1 ([M, 1]): the advantage is given, so
                    # the loss needs no temporal order.
                    step = client.compute_loss(
                        reward=flat["reward"][index, None],
                        done=flat["done"][index, None],
                        terminated=flat["terminated"][index, None],
                        observation=flat["observation"][index, None],
                        next_observation=flat["next_observation"][index, None],
                        action=flat["action"][index, None],
                        sample_log_prob=flat["log_prob"][index, None],
                        advantage=flat["advantage"][index, None],
                        value_target=flat["value_target"][index, None],
                        loss=loss,
                        apply_update=True,
                        expected_parameter_version=version,
                        model=args.model,
                    )
                    version = step.new_parameter_version
                    server += _server_seconds(step.timing)
                    metrics.append(step.metrics)
            learned = time.perf_counter()
            returns = [r for s in segments for r in s.episode_returns]
            recent.extend(returns)
            env_steps += args.actors * args.steps
            row = Row(
                iteration=iteration,
                env_steps=env_steps,
                episodes=len(returns),
                mean_return=float(np.mean(returns)) if returns else float("nan"),
                mean_return_100=float(np.mean(recent)) if recent else float("nan"),
                pulled_version=min(pulled_versions),  # the stalest actor's
                parameter_version=version,
                rollout_s=collected - pulled,
                rpc_s=(pulled - start) + (learned - collected) - server,
                server_s=server,
                loss_objective=float(np.mean([m["loss_objective"] for m in metrics])),
                loss_critic=float(np.mean([m["loss_critic"] for m in metrics])),
                entropy=float(np.mean([m["entropy"] for m in metrics])),
            )
            rows.append(row)
            progress(row)
            if len(recent) == recent.maxlen and row.mean_return_100 >= args.solved:
                break
    return rows


def _progress(args: argparse.Namespace):
    """A tqdm bar over iterations with the returns in its postfix (``--quiet``: nothing)."""
    if args.quiet:
        return lambda row: None
    from tqdm import tqdm

    bar = tqdm(total=args.max_iterations, unit="it", desc="remote PPO", file=sys.stderr)

    def update(row: Row) -> None:
        bar.update(1)
        bar.set_postfix(
            steps=row.env_steps,
            ret=f"{row.mean_return:.0f}",
            ret100=f"{row.mean_return_100:.0f}",
            v=row.parameter_version,
        )

    return update


# --------------------------------------------------------------------------------------------
# Outputs
# --------------------------------------------------------------------------------------------


def write_csv(rows: list[Row], path: Path) -> None:
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=[f.name for f in dataclasses.fields(Row)])
        writer.writeheader()
        for row in rows:
            writer.writerow(
                {k: round(v, 5) if isinstance(v, float) else v for k, v in vars(row).items()}
            )


def plot(rows: list[Row], path: Path, solved: float, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r.env_steps for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    per_iteration = [r.mean_return for r in rows]
    left.plot(steps, per_iteration, ".", alpha=0.5, label="episodes ended in the iteration")
    left.plot(steps, [r.mean_return_100 for r in rows], "-", label="last 100 episodes")
    left.axhline(solved, color="gray", linestyle="--", label=f"solved ({solved:g})")
    left.set_xlabel("environment steps")
    left.set_ylabel("return")
    left.set_title("CartPole-v1 return")
    left.legend(loc="upper left")
    iterations = [r.iteration for r in rows]
    rollout = np.array([r.rollout_s for r in rows])
    rpc = np.array([r.rpc_s for r in rows])
    server = np.array([r.server_s for r in rows])
    right.bar(iterations, rollout, label="rollout (actors)")
    right.bar(iterations, rpc, bottom=rollout, label="RPC (transport)")
    right.bar(iterations, server, bottom=rollout + rpc, label="server compute")
    # The first iteration carries the server's warm-up (first backward pass, TorchScript's
    # profiling runs): cut the axis above 3× the median and write the cut bars' totals.
    total = rollout + rpc + server
    top = 3 * float(np.median(total))
    if total.max() > top:
        right.set_ylim(0, top)
        for i, t in zip(iterations, total, strict=True):
            if t > top:
                right.annotate(f"{t:.1f} s", (i, top), xytext=(4, -12), textcoords="offset points")
    right.set_xlabel("iteration")
    right.set_ylabel("seconds")
    right.set_title("time per iteration")
    right.legend(loc="upper right")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", help="an existing server (default: start one)")
    parser.add_argument("--model", default="cartpole", help="the model's name")
    parser.add_argument("--actors", type=int, default=8)
    parser.add_argument("--steps", type=int, default=128, help="steps per actor per iteration")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--minibatches", type=int, default=4)
    parser.add_argument("--lr", type=float, default=2.5e-3, help="Adam's (for the export)")
    parser.add_argument("--entropy-coeff", type=float, default=0.0)
    parser.add_argument("--max-iterations", type=int, default=150)
    parser.add_argument("--solved", type=float, default=475.0, help="mean of 100 episodes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    if args.target:
        rows = train(args, args.target)
    else:
        with tempfile.TemporaryDirectory() as repository:
            export_cartpole_model(Path(repository), args.model, args.seed, args.lr)
            with serve(Path(repository)) as target:
                rows = train(args, target)
    elapsed = time.perf_counter() - started
    args.out.mkdir(parents=True, exist_ok=True)
    write_csv(rows, args.out / "learning_curve.csv")
    last = rows[-1]
    title = (
        f"remote PPO, {args.actors} actors × {args.steps} steps: {last.env_steps} steps, "
        f"{len(rows)} iterations, {elapsed:.0f} s"
    )
    plot(rows, args.out / "learning_curve.png", args.solved, title)
    solved = last.mean_return_100 >= args.solved
    print(
        f"{'solved' if solved else 'not solved'}: mean return of the last 100 episodes "
        f"{last.mean_return_100:.1f} (threshold {args.solved:g}) after {last.env_steps} "
        f"environment steps, {len(rows)} iterations, {elapsed:.0f} s; "
        f"wrote {args.out / 'learning_curve.png'} and {args.out / 'learning_curve.csv'}",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
