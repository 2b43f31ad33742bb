"""A replica of a DreamerV3 learner copies the world model too (GetParameters streams it as
`world_model.<network>.…`): after a learner step, the replica holds the learner's tensors and
answers a Dreamer loss with the learner's numbers (but for the return EMAs, learner state that
is not copied); it refuses the update itself."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from advantage_client import AdvantageClient, DreamerV3, FailedPreconditionError

from service.settings import Settings
from tests.support.replication import SERVING, health, wait_until
from tests.support.servers import running_server


def _replay() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    is_first = np.zeros((2, 5), dtype=bool)
    is_first[:, 0] = True
    return {
        "observation": rng.normal(size=(2, 5, 3)).astype(np.float32),
        "action": rng.uniform(-1, 1, size=(2, 5, 1)).astype(np.float32),
        "reward": rng.normal(size=(2, 5)).astype(np.float32),
        "is_first": is_first,
    }


def test_a_replica_copies_the_world_model_and_serves_its_numbers() -> None:
    with (
        running_server(Settings(dreamer_demo=True)) as learner,
        running_server(Settings(dreamer_demo=True, follow=learner.target)) as replica,
        AdvantageClient(learner.target, timeout=60) as to_learner,
        AdvantageClient(replica.target, timeout=60) as to_replica,
    ):
        wait_until(lambda: health(replica.target) == SERVING, "the replica's first copy")
        step = to_learner.dreamer_loss(
            DreamerV3(), model="dreamer-demo", replay=_replay(), apply_update=True
        )
        assert step.new_parameter_version == 1
        wait_until(
            lambda: to_replica.get_model("dreamer-demo").parameter_version == 1,
            "the replica to copy version 1",
        )
        _, theirs = to_learner.get_parameters("dreamer-demo", as_="torch")
        _, mine = to_replica.get_parameters("dreamer-demo", as_="torch")
        world = sorted(k for k in theirs if k.startswith("world_model."))
        assert "world_model.prior.cell.weight_ih" in world
        assert sorted(mine) == sorted(theirs)
        assert all(torch.equal(mine[k], theirs[k]) for k in theirs)
        # The same draws on both servers (each runs in this process): the same numbers.
        torch.manual_seed(4)
        on_learner = to_learner.dreamer_loss(DreamerV3(), model="dreamer-demo", replay=_replay())
        torch.manual_seed(4)
        on_replica = to_replica.dreamer_loss(DreamerV3(), model="dreamer-demo", replay=_replay())
        # The learner's training state (return EMAs, slow critic, optimizers) is not copied: a
        # replica never updates. Its return EMAs start at 0, so only they differ (the scale is
        # max(1, high − low) = 1 on both, so the losses agree).
        ema = {"return_low", "return_high"}
        assert {k: v for k, v in on_replica.metrics.items() if k not in ema} == pytest.approx(
            {k: v for k, v in on_learner.metrics.items() if k not in ema}, rel=1e-6
        )
        assert on_replica.loss == pytest.approx(on_learner.loss, rel=1e-6)
        with pytest.raises(FailedPreconditionError, match="replica"):
            to_replica.dreamer_loss(
                DreamerV3(), model="dreamer-demo", replay=_replay(), apply_update=True
            )
