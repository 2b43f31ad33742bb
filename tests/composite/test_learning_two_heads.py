"""A remote learner with a two-head policy learns, and both heads learn.

Environment (written here): a contextual bandit; each step shows x ~ N(0, I₄) and ends its
episode. The policy picks a move (categorical over 3) and an aim (tanh-normal in (−1, 1)²):
reward = 1[move = argmax x₀..₂] − mean|aim − (tanh x₃, −tanh x₃)|. Neither head's choice tells
the other anything, so each head must learn its own part.

Pre-stated margins, after 60 ClipPPO updates over the wire (actions sampled by a local copy of
the actor pulled with GetParameters): the move head's probability of the best move on 512
held-out contexts rises by at least 0.2, and the aim head's error |tanh(loc) − target| falls by
at least 0.15.
"""

from __future__ import annotations

import torch
from torch import distributions as D

from service.models.manifest import OptimizerSpec
from service.pb.advantage.v1 import advantage_pb2 as pb
from tests.support import composite as C
from tests.support.servers import running_server
from tests.support.wire import stub, tensor

UPDATES = 60
MOVE_MARGIN, AIM_MARGIN = 0.2, 0.15
DTYPES = {pb.DTYPE_FLOAT32: torch.float32, pb.DTYPE_FLOAT64: torch.float64}


def target(x: torch.Tensor) -> torch.Tensor:
    t = torch.tanh(x[..., 3])
    return torch.stack([t, -t], -1)


def pull_actor(api, actor: C.TwoHeadActor) -> int:
    """GetParameters → the local actor (decoded here, independently of the server)."""
    pieces: dict[str, list[torch.Tensor]] = {}
    shapes: dict[str, list[int]] = {}
    version = -1
    for chunk in api.GetParameters(
        pb.GetParametersRequest(model_name="two_heads", prefixes=["actor_network."])
    ):
        version = chunk.parameter_version
        for named in chunk.tensors:
            data = torch.frombuffer(bytearray(named.data.raw_data), dtype=DTYPES[named.data.dtype])
            pieces.setdefault(named.name, []).append(data)
            shapes[named.name] = list(named.shape)
    actor.load_state_dict(
        {k.removeprefix("actor_network."): torch.cat(v).view(shapes[k]) for k, v in pieces.items()}
    )
    return version


def scores(actor: C.TwoHeadActor, contexts: torch.Tensor) -> tuple[float, float]:
    """(probability of the best move, mean aim error of the mean action) — no sampling noise."""
    with torch.no_grad():
        logits, loc, _ = actor.parts(contexts)
    best = contexts[..., :3].argmax(-1, keepdim=True)
    move = float(logits.softmax(-1).gather(-1, best).mean())
    aim = float((torch.tanh(loc) - target(contexts)).abs().mean())
    return move, aim


def test_both_heads_improve_through_remote_updates() -> None:
    optimizer = OptimizerSpec("adam", lr=1e-2, max_grad_norm=1.0)
    model = C.model(seed=5, optimizer=optimizer)
    local = C.networks(seed=0)[1]
    held_out = torch.randn(512, 4, generator=torch.Generator().manual_seed(99), dtype=C.F64)
    g = torch.Generator().manual_seed(8)
    with running_server(models={"two_heads": model}) as server:
        api = stub(server.target)
        pull_actor(api, local)
        initial = scores(local, held_out)
        for update in range(UPDATES):
            version = pull_actor(api, local)
            assert version == update
            x = torch.randn(16, 8, 4, generator=g, dtype=C.F64)
            with torch.no_grad():
                logits, loc, scale = local.parts(x)
                moves = D.Categorical(logits=logits)
                move = torch.multinomial(moves.probs.reshape(-1, 3), 1, generator=g).view(16, 8)
                pre = loc + scale * torch.randn(loc.shape, generator=g, dtype=C.F64)
                aims = D.TransformedDistribution(
                    D.Independent(D.Normal(loc, scale), 1), [D.TanhTransform(cache_size=1)]
                )
                aim = torch.tanh(pre).clamp(-0.999999, 0.999999)
                aim_log_prob = aims.log_prob(aim)
            reward = (move == x[..., :3].argmax(-1)).to(C.F64)
            reward = reward - (aim - target(x)).abs().mean(-1)
            ends = torch.ones(16, 8, dtype=torch.bool)
            trajectory = pb.Trajectory(
                reward=tensor(reward),
                done=tensor(ends),
                terminated=tensor(ends),
                form=pb.TRAJECTORY_FORM_COMPACT,  # next observations are never needed here
            )
            trajectory.observation["observation"].CopyFrom(
                tensor(torch.cat([x, torch.zeros(16, 1, 4, dtype=C.F64)], dim=1))
            )
            trajectory.next_observation["observation"].CopyFrom(
                tensor(torch.zeros(0, 4, dtype=C.F64))
            )
            trajectory.action_heads["action.move"].CopyFrom(tensor(move))
            trajectory.action_heads["action.aim"].CopyFrom(tensor(aim))
            trajectory.sample_log_prob_heads["action.move"].CopyFrom(tensor(moves.log_prob(move)))
            trajectory.sample_log_prob_heads["action.aim"].CopyFrom(tensor(aim_log_prob))
            response = api.ComputeLoss(
                pb.ComputeLossRequest(
                    model_name="two_heads",
                    trajectory=trajectory,
                    ppo_clip=pb.ClipPPOLoss(),
                    apply_update=True,
                    expected_parameter_version=version,
                ),
                timeout=60,
            )
            assert response.new_parameter_version == version + 1
            assert {"composite_entropy.action.move_entropy",
                    "composite_entropy.action.aim_entropy"} <= set(response.metrics)  # fmt: skip
        pull_actor(api, local)
        final = scores(local, held_out)
    assert final[0] >= initial[0] + MOVE_MARGIN, (initial, final)
    assert final[1] <= initial[1] - AIM_MARGIN, (initial, final)
