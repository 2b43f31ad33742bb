"""DreamerV3 benchmark: one `dreamer_v3` learner step over loopback vs TorchRL's `DreamerV3Loss`
in-process, on the same modules, in the same run.

    .venv/bin/python benchmarks/dreamer.py            # 15 steps each (~2 min on 2 cores)
    .venv/bin/python benchmarks/dreamer.py --quick    # 5 steps each

One step = the world-model loss on a replay batch of 16 × 64 steps, imagination of 15 steps
from each of the 1024 posterior latents, the actor's and the critic's losses, backward and the
three Adam steps (DreamerV3's learning rates and clipping), the slow critic's EMA. The service
runs in a separate process (`python -m service.cli serve`) on a model folder exported with
`export_model`; the client is `advantage_client`. TorchRL runs the same networks (the demo
RSSM's classes at the sizes below) with `DreamerV3ModelLoss` / `ActorLoss` / `ValueLoss`
composed by `DreamerV3Loss`, three `torch.optim.Adam` and `SoftUpdate`. Both sides run with
the same torch thread count (`--threads`, default 1: the benchmark machine has 2 shared
cores). Prints the medians and the ratio service / TorchRL.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "clients" / "python"))

from advantage_client import (  # noqa: E402
    AdvantageClient,
    DreamerImagination,
    DreamerV3,
    DreamerV3Actor,
    DreamerV3Value,
)
from torchrl.objectives import SoftUpdate  # noqa: E402

from benchmarks.service import server_process  # noqa: E402
from service.models.dreamer_demo import DreamerSizes  # noqa: E402
from service.models.export import export_model  # noqa: E402
from service.models.world_model import DEFAULT_OPTIMIZERS  # noqa: E402
from service.models.world_model_export import WorldModelModules  # noqa: E402
from tests.support.dreamer import make_nets, replay_tensordict, torchrl_dreamer  # noqa: E402

SIZES = DreamerSizes(
    observation=16,
    action=2,
    num_categoricals=8,
    num_classes=8,
    belief=64,
    hidden=128,
    embedding=64,
)
BATCH, STEPS, HORIZON = 16, 64, 15
GAMMA, LMBDA, SLOW = 0.99, 0.95, 1.0


def replay(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    is_first = np.zeros((BATCH, STEPS), dtype=bool)
    is_first[:, 0] = True
    return {
        "observation": rng.normal(size=(BATCH, STEPS, SIZES.observation)).astype(np.float32),
        "action": rng.uniform(-1, 1, size=(BATCH, STEPS, SIZES.action)).astype(np.float32),
        "reward": rng.normal(size=(BATCH, STEPS)).astype(np.float32),
        "is_first": is_first,
        "terminated": np.zeros((BATCH, STEPS), dtype=bool),
    }


def export(folder: Path) -> str:
    nets = make_nets(SIZES, dtype=torch.float32)
    from service.models.dreamer_demo import dreamer_manifest

    manifest = dreamer_manifest(SIZES)
    export_model(
        folder / "dreamer",
        "dreamer",
        manifest.inputs,
        value_network=nets.critic,
        actor_network=nets.actor,
        action=manifest.action,
        world_model=WorldModelModules(
            prior=nets.prior,
            posterior=nets.posterior,
            encoder=nets.encoder,
            decoder=nets.decoder,
            reward=nets.reward,
            continue_head=nets.continue_head,
            observations=manifest.world_model.observations,
            num_categoricals=SIZES.num_categoricals,
            num_classes=SIZES.num_classes,
            belief_size=SIZES.belief,
            action_size=SIZES.action,
        ),
    )
    return "dreamer"


class TorchRLStep:
    """TorchRL's DreamerV3 learner step on the same networks (fresh copies, same seed)."""

    def __init__(self) -> None:
        self.nets = make_nets(SIZES, dtype=torch.float32)
        self.losses = torchrl_dreamer(
            self.nets,
            horizon=HORIZON,
            gamma=GAMMA,
            lmbda=LMBDA,
            value_kwargs={"slow_critic_regularization": SLOW},
        )
        world = [self.nets.prior, self.nets.posterior, self.nets.encoder, self.nets.decoder]
        world += [self.nets.reward, self.nets.continue_head]
        self.groups = {
            "world_model": [p for m in world for p in m.parameters()],
            "actor": list(self.nets.actor.parameters()),
            "critic": list(self.losses.value_loss.value_model_params.values(True, True)),
        }
        self.optimizers = {
            name: torch.optim.Adam(params, lr=DEFAULT_OPTIMIZERS[name].lr)
            for name, params in self.groups.items()
        }
        self.updater = SoftUpdate(self.losses.value_loss, tau=0.02)

    def __call__(self, batch: dict[str, np.ndarray]) -> None:
        td = replay_tensordict(
            torch.from_numpy(batch["observation"]),
            torch.from_numpy(batch["action"]),
            torch.from_numpy(batch["reward"]),
            torch.from_numpy(batch["is_first"]),
            torch.from_numpy(batch["terminated"]),
            SIZES,
        )
        out = self.losses.combined(td)
        total = sum(out[k].squeeze() for k in out.keys() if k.startswith("loss_"))  # noqa: SIM118
        for optimizer in self.optimizers.values():
            optimizer.zero_grad(set_to_none=True)
        total.backward()
        for name, optimizer in self.optimizers.items():
            limit = DEFAULT_OPTIMIZERS[name].max_grad_norm
            torch.nn.utils.clip_grad_norm_(self.groups[name], limit)
            optimizer.step()
        self.updater.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="5 steps each")
    parser.add_argument("--threads", type=int, default=1, help="torch threads, both sides")
    args = parser.parse_args()
    repeats = 5 if args.quick else 15
    torch.set_num_threads(args.threads)
    # The server process's pools. NUMBA_NUM_THREADS too: the estimators' warm-up runs numba's
    # OpenMP kernels on the compute threads, which sets their OpenMP thread count, and torch's
    # ops on those threads then use it (measured: 2 threads made this step 10–30× slower on the
    # shared 2-core machine).
    os.environ["OMP_NUM_THREADS"] = os.environ["NUMBA_NUM_THREADS"] = str(args.threads)
    batches = [replay(seed) for seed in range(repeats + 2)]
    loss = DreamerV3(
        actor=DreamerV3Actor(
            imagination=DreamerImagination(imagination_horizon=HORIZON, gamma=GAMMA, lmbda=LMBDA)
        ),
        value=DreamerV3Value(slow_critic_regularization=SLOW),
    )
    reference = TorchRLStep()
    with tempfile.TemporaryDirectory() as folder:
        name = export(Path(folder))
        with server_process(Path(folder)) as target, AdvantageClient(target, timeout=600) as client:
            service_ms, torchrl_ms = [], []
            for index, batch in enumerate(batches):  # interleaved; the first two warm up
                started = time.perf_counter()
                client.dreamer_loss(loss, model=name, replay=batch, apply_update=True)
                middle = time.perf_counter()
                reference(batch)
                ended = time.perf_counter()
                if index >= 2:
                    service_ms.append((middle - started) * 1e3)
                    torchrl_ms.append((ended - middle) * 1e3)
    service, torchrl = statistics.median(service_ms), statistics.median(torchrl_ms)
    print(
        f"dreamer_v3 learner step, replay {BATCH}×{STEPS}, horizon {HORIZON}, RSSM "
        f"{SIZES.num_categoricals}×{SIZES.num_classes} + belief {SIZES.belief}, hidden "
        f"{SIZES.hidden}, torch threads {args.threads}, {len(service_ms)} steps each"
    )
    print(f"  TorchRL DreamerV3Loss in-process   median {torchrl:8.1f} ms")
    print(f"  service over loopback (gRPC)        median {service:8.1f} ms")
    print(f"  ratio service / TorchRL             {service / torchrl:8.3f}")


if __name__ == "__main__":
    main()
