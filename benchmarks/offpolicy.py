"""Off-policy benchmark: one SAC and one DQN learner step over loopback vs TorchRL in-process.

    .venv/bin/python benchmarks/offpolicy.py            # ~2 min on 2 cores
    .venv/bin/python benchmarks/offpolicy.py --quick    # smoke run

A learner step = the loss on a replay sample of 256 transitions, backward, Adam, and the soft
target update (τ = 0.005). Remote: `advantage_client.compute_offpolicy_loss(apply_update=True)`
against a server process (`python -m service.cli serve`) whose models `export_model` wrote
(torch.export files: SAC with a 17-dim observation, 6-dim tanh-normal actor and a Q ensemble of
2; DQN with an 8-dim observation and 4 actions; every MLP 256-256). In-process: TorchRL 0.14.1's
SACLoss / DQNLoss + Adam + SoftUpdate on eager modules of the same shapes. Both in this run,
medians; the ratio is remote / in-process.

Also measured: the server's fused target update (`torch._foreach_lerp_` over every target
tensor, `service.runtime.targets.move_targets`) against TorchRL's `SoftUpdate.step()` (one lerp
per tensor, from Python), on the SAC model's target Q ensemble and on a larger one.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "clients" / "python"))

from service.models.demo_offpolicy import GaussianActor, StateActionMLP, mlp  # noqa: E402
from service.models.ensemble import QValueEnsemble  # noqa: E402
from service.models.export import export_model  # noqa: E402
from service.models.manifest import ActionSpec, InputSpec  # noqa: E402
from service.models.qvalue import TargetUpdateSpec  # noqa: E402
from service.runtime.targets import move_targets  # noqa: E402

_spec = importlib.util.spec_from_file_location("bench_service", ROOT / "benchmarks" / "service.py")
assert _spec is not None and _spec.loader is not None
_service_bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_service_bench)
median_ms, server_process = _service_bench.median_ms, _service_bench.server_process

BATCH, HIDDEN, TAU = 256, 256, 0.005
SAC_OBS, SAC_ACT = 17, 6
DQN_OBS, DQN_ACTIONS = 8, 4


def sac_networks(seed: int = 0) -> tuple[nn.Module, list[nn.Module]]:
    torch.manual_seed(seed)
    actor = GaussianActor(SAC_OBS, SAC_ACT, hidden=HIDDEN)
    actor.body = nn.Sequential(
        nn.Linear(SAC_OBS, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, HIDDEN), nn.ReLU(),
        nn.Linear(HIDDEN, 2 * SAC_ACT),
    )  # fmt: skip
    members = [StateActionMLP(SAC_OBS, SAC_ACT, hidden=HIDDEN) for _ in range(2)]
    return actor, members


def dqn_network(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return mlp(DQN_OBS, DQN_ACTIONS, hidden=HIDDEN)


def write_repository(folder: Path) -> None:
    actor, members = sac_networks()
    export_model(
        folder / "sac",
        "sac",
        (InputSpec("observation", (SAC_OBS,)),),
        actor_network=actor,
        action=ActionSpec("tanh_normal", (SAC_ACT,)),
        qvalue_network=members,
        target_update=TargetUpdateSpec(tau=TAU),
    )
    export_model(
        folder / "dqn",
        "dqn",
        (InputSpec("observation", (DQN_OBS,)),),
        qvalue_network=dqn_network(),
        qvalue_kind="action_value",
        num_actions=DQN_ACTIONS,
        target_update=TargetUpdateSpec(tau=TAU),
    )


def batches(rng: np.random.Generator) -> dict[str, dict[str, np.ndarray]]:
    def common(obs: int) -> dict[str, np.ndarray]:
        done = rng.random(BATCH) < 0.02
        return {
            "observation": rng.standard_normal((BATCH, obs), dtype=np.float32),
            "next_observation": rng.standard_normal((BATCH, obs), dtype=np.float32),
            "reward": rng.standard_normal(BATCH, dtype=np.float32),
            "done": done,
            "terminated": done,
        }

    sac = common(SAC_OBS)
    sac["action"] = rng.uniform(-0.99, 0.99, (BATCH, SAC_ACT)).astype(np.float32)
    dqn = common(DQN_OBS)
    dqn["action"] = rng.integers(0, DQN_ACTIONS, BATCH)
    return {"sac": sac, "dqn": dqn}


def tensordict(batch: dict[str, np.ndarray]):
    from tensordict import TensorDict

    t = {k: torch.from_numpy(v) for k, v in batch.items()}
    return TensorDict(
        {
            "observation": t["observation"],
            "action": t["action"],
            "next": {
                "observation": t["next_observation"],
                "reward": t["reward"].unsqueeze(-1),
                "done": t["done"].unsqueeze(-1),
                "terminated": t["terminated"].unsqueeze(-1),
            },
        },
        [BATCH],
    )


def torchrl_learners(data: dict[str, dict[str, np.ndarray]]):
    """(SAC step, DQN step, SAC SoftUpdate) with TorchRL's losses, Adam and SoftUpdate."""
    from tensordict.nn import TensorDictModule
    from torchrl.data import Bounded, Categorical
    from torchrl.modules import ProbabilisticActor, QValueActor, TanhNormal, ValueOperator
    from torchrl.objectives import DQNLoss, SACLoss, SoftUpdate

    actor, members = sac_networks()
    policy = ProbabilisticActor(
        TensorDictModule(actor, in_keys=["observation"], out_keys=["loc", "scale"]),
        in_keys=["loc", "scale"],
        distribution_class=TanhNormal,
        spec=Bounded(-1.0, 1.0, (SAC_ACT,)),
    )
    sac = SACLoss(policy, ValueOperator(members[0], in_keys=["observation", "action"]))
    sac_update = SoftUpdate(sac, tau=TAU)
    sac_optimizer = torch.optim.Adam(sac.parameters(), lr=3e-4)
    sac_td = tensordict(data["sac"])

    def sac_step() -> None:
        out = sac(sac_td)
        sac_optimizer.zero_grad()
        (out["loss_actor"] + out["loss_qvalue"] + out["loss_alpha"]).backward()
        sac_optimizer.step()
        sac_update.step()

    qnet = QValueActor(
        dqn_network(), in_keys=["observation"], spec=Categorical(DQN_ACTIONS),
        action_space="categorical",
    )  # fmt: skip
    dqn = DQNLoss(qnet, action_space="categorical", delay_value=True)
    dqn_update = SoftUpdate(dqn, tau=TAU)
    dqn_optimizer = torch.optim.Adam(dqn.parameters(), lr=3e-4)
    dqn_td = tensordict(data["dqn"])

    def dqn_step() -> None:
        out = dqn(dqn_td)
        dqn_optimizer.zero_grad()
        out["loss"].backward()
        dqn_optimizer.step()
        dqn_update.step()

    return sac_step, dqn_step, sac_update


def target_update_costs(torchrl_update, repeats: int) -> list[tuple[str, int, float, float]]:
    """(what, tensors, fused ms, per-tensor ms) for the SAC targets and a 10-member ensemble."""
    rows = []
    for label, count in (
        ("SAC target Q ensemble (2 × 256-256)", 2),
        ("REDQ-sized (10 × 256-256)", 10),
    ):
        sources = QValueEnsemble(
            [StateActionMLP(SAC_OBS, SAC_ACT, hidden=HIDDEN) for _ in range(count)]
        )
        targets = QValueEnsemble(
            [StateActionMLP(SAC_OBS, SAC_ACT, hidden=HIDDEN) for _ in range(count)]
        )
        t = [p.data for p in targets.parameters()]
        s = [p.data for p in sources.parameters()]
        rule = TargetUpdateSpec(tau=TAU)
        fused = median_ms(lambda t=t, s=s, rule=rule: move_targets(rule, t, s), repeats)

        def loop(t=t, s=s) -> None:  # TorchRL's SoftUpdate._step, one tensor at a time
            for target, source in zip(t, s, strict=True):
                target.lerp_(source, 1 - (1 - TAU))

        rows.append((label, len(t), fused, median_ms(loop, repeats)))
    rows.append(
        (
            "TorchRL SoftUpdate.step() on its SAC loss",
            -1,
            float("nan"),
            median_ms(torchrl_update.step, repeats),
        )
    )
    return rows


def interleaved(
    steps: dict[str, Callable[[], object]], repeats: int, warmup: int = 3
) -> dict[str, float]:
    """Median ms of each step, the steps taking turns (so both see the same machine load)."""
    for fn in steps.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, fn in steps.items():
            start = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - start) * 1e3)
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    args = parser.parse_args()
    repeats = 10 if args.quick else 50
    # The in-process reference gets one compute thread, its fastest setting on a small shared
    # machine (two processes' OpenMP threads spinning on the same cores slowed it 10×); the server
    # runs with its defaults, as deployed.
    torch.set_num_threads(1)
    from advantage_client import DQN, SAC, AdvantageClient

    data = batches(np.random.default_rng(0))
    sac_step, dqn_step, torchrl_sac_update = torchrl_learners(data)
    with tempfile.TemporaryDirectory() as folder:
        write_repository(Path(folder))
        with server_process(Path(folder)) as target, AdvantageClient(target, timeout=60) as client:
            losses = {"sac": SAC(seed=0), "dqn": DQN()}

            def remote(name: str):
                return lambda: client.compute_offpolicy_loss(
                    model=name, loss=losses[name], apply_update=True, **data[name]
                )

            measured = interleaved(
                {
                    "sac remote": remote("sac"),
                    "sac local": sac_step,
                    "dqn remote": remote("dqn"),
                    "dqn local": dqn_step,
                },
                repeats,
            )
    print(
        f"learner step, batch {BATCH}, MLPs {HIDDEN}-{HIDDEN}, Adam + SoftUpdate(tau={TAU}), "
        "TorchRL on one thread, the server at its defaults"
    )
    print("| step | remote over loopback (ms) | TorchRL in-process (ms) | ratio |")
    print("|---|---|---|---|")
    for name in ("sac", "dqn"):
        here, there = measured[f"{name} local"], measured[f"{name} remote"]
        print(f"| {name.upper()} | {there:.2f} | {here:.2f} | {there / here:.2f} |")
    print("\ntarget update (soft, one pass over every target tensor)")
    print("| targets | tensors | fused foreach (ms) | per-tensor loop (ms) | ratio |")
    print("|---|---|---|---|---|")
    for label, count, fused, loop in target_update_costs(torchrl_sac_update, repeats * 4):
        if count < 0:
            print(f"| {label} | – | – | {loop:.3f} | – |")
        else:
            print(f"| {label} | {count} | {fused:.3f} | {loop:.3f} | {loop / fused:.1f} |")


if __name__ == "__main__":
    main()
