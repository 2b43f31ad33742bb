"""Seeded random malformed structure (n_agents, masks, heads, forms) against real servers: every
answer is OK or a typed client error, never INTERNAL/UNKNOWN, and no write is applied unless the
call succeeded."""

from __future__ import annotations

import random

import grpc
import torch

from service.models.demo import demo_model
from service.pb.advantage.v1 import advantage_pb2 as pb
from tests.support import agents as A
from tests.support import composite as C
from tests.support.servers import running_server
from tests.support.wire import stub, tensor

DTYPES = (torch.float32, torch.float64, torch.bool, torch.int64)
CASES = 120


def _random_tensor(rng: random.Random, shape: list[int]) -> torch.Tensor:
    dtype = rng.choice(DTYPES)
    g = torch.Generator().manual_seed(rng.randrange(2**31))
    if dtype == torch.bool:
        return torch.rand(shape, generator=g) < 0.7
    if dtype == torch.int64:
        return torch.randint(-1, 4, shape, generator=g)
    values = torch.randn(shape, generator=g).to(dtype)
    if rng.random() < 0.2 and values.numel():
        values.view(-1)[0] = float("nan")
    return values


def _shape_near(rng: random.Random, shape: list[int]) -> list[int]:
    shape = list(shape)
    roll = rng.random()
    if roll < 0.6 or not shape:
        return shape
    if roll < 0.75:
        shape[rng.randrange(len(shape))] += rng.choice((-1, 1, 2))
        return [max(0, d) for d in shape]
    if roll < 0.9:
        return [*shape, rng.choice((1, 2, 3))]
    return shape[:-1]


def _mutate(rng: random.Random, message: pb.Trajectory, steps: list[int]) -> None:
    for _ in range(rng.randint(1, 3)):
        choice = rng.randrange(6)
        if choice == 0:
            message.n_agents = rng.choice((0, 1, 2, 3, 4, 2**31))
        elif choice == 1:
            message.mask.CopyFrom(tensor(_random_tensor(rng, _shape_near(rng, steps))))
        elif choice == 2:
            key = rng.choice(("action.move", "action.aim", "action.fire", "move", ""))
            head = _random_tensor(rng, _shape_near(rng, [*steps, rng.choice((1, 2))]))
            message.action_heads[key].CopyFrom(tensor(head))
        elif choice == 3:
            key = rng.choice(("action.move", "action.aim", "zzz"))
            message.sample_log_prob_heads[key].CopyFrom(
                tensor(_random_tensor(rng, _shape_near(rng, steps)))
            )
        elif choice == 4:
            message.form = rng.choice((pb.TRAJECTORY_FORM_FULL, pb.TRAJECTORY_FORM_COMPACT))
        else:
            message.done.CopyFrom(tensor(_random_tensor(rng, _shape_near(rng, steps))))


def test_random_structure_never_fails_internally() -> None:
    rng = random.Random(20261201)
    models = {
        "two_heads": C.model(seed=0),
        "team": A.model(seed=0),
        "demo": demo_model(torch.device("cpu")),
    }
    seen: set[grpc.StatusCode] = set()
    with running_server(models=models) as server:
        api = stub(server.target)
        for case in range(CASES):
            which = rng.choice(("two_heads", "team"))
            if which == "two_heads":
                data = C.make_data((2,), steps=4, seed=case)
                message = C.trajectory(data, per_head=rng.random() < 0.5)
                steps = [2, 4]
            else:
                data = A.make_data(2, steps=4, seed=case, shared_done=rng.random() < 0.5)
                message = A.trajectory(data)
                steps = [2, 4, A.AGENTS]
            _mutate(rng, message, steps)
            version = models[which].parameter_version
            call, request = rng.choice(
                (
                    (api.ComputeAdvantage, pb.ComputeAdvantageRequest(model_name=which)),
                    (api.ComputeLoss, pb.ComputeLossRequest(model_name=which, apply_update=True)),
                )
            )
            request.trajectory.CopyFrom(message)
            try:
                response = call(request, timeout=60)
            except grpc.RpcError as error:
                code = error.code()
                assert code not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN), (
                    case, error.details(),
                )  # fmt: skip
                assert models[which].parameter_version == version
                seen.add(code)
            else:
                seen.add(grpc.StatusCode.OK)
                if isinstance(response, pb.ComputeLossResponse) and response.updated:
                    assert models[which].parameter_version == version + 1
    assert grpc.StatusCode.INVALID_ARGUMENT in seen
