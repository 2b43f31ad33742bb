"""The kept fuzz corpus: bad requests for the gRPC and REST surfaces, hand-written and random.

`python -m tests.support.fuzz_cases` (re)writes `tests/fuzz/corpus/{grpc,rest}.jsonl`: every
hand-written case below (each finding of the hardening issue among them) plus seeded random
mutations of valid requests. `tests/fuzz/test_corpus.py` replays every line against a real
server on each run; fresh random cases come from the hypothesis tests beside it. A case that
once broke the server is added here by hand and stays.
"""

from __future__ import annotations

import base64
import copy
import json
import random
import sys
from pathlib import Path
from typing import Any

import torch

from service.pb.advantage.v1 import advantage_pb2 as pb
from tests.support.wire import compact_trajectory, full_trajectory, random_batch, tensor

CORPUS = Path(__file__).resolve().parents[1] / "fuzz" / "corpus"
RANDOM_GRPC_CASES = 240
RANDOM_REST_CASES = 160
NOT_UTF8 = base64.b64encode(b'{"a": "\xff"}').decode()


def _grpc(note: str, rpc: str, message: Any) -> dict[str, Any]:
    payload = message if isinstance(message, bytes) else message.SerializeToString()
    return {"note": note, "rpc": rpc, "payload": base64.b64encode(payload).decode()}


def _loss(**fields: Any) -> pb.ComputeLossRequest:
    return pb.ComputeLossRequest(**fields)


def _unknown_in_gae(trajectory: pb.Trajectory) -> pb.ComputeAdvantageRequest:
    request = pb.ComputeAdvantageRequest(trajectory=trajectory)
    request.gae.MergeFromString(b"\x98\x01\x01")  # field 19, varint 1: a knob from the future
    return request


def grpc_cases() -> list[dict[str, Any]]:
    """Hand-written bad (or edge) gRPC requests, one per known way to get them wrong."""
    batch = random_batch((2,), 4)
    good = full_trajectory(batch)
    cases = [
        _grpc("garbage bytes", "ComputeAdvantage", b"\xff\xfe\x00garbage"),
        _grpc("empty request", "ComputeAdvantage", pb.ComputeAdvantageRequest()),
        _grpc("empty loss request", "ComputeLoss", _loss()),
        _grpc("T = 1 full form", "ComputeAdvantage",
              pb.ComputeAdvantageRequest(trajectory=full_trajectory(random_batch((2,), 1)))),
        _grpc("T = 1 full form, loss", "ComputeLoss",
              _loss(trajectory=full_trajectory(random_batch((2,), 1)))),
        _grpc("T = 1 compact form", "ComputeAdvantage",
              pb.ComputeAdvantageRequest(trajectory=compact_trajectory(random_batch((2,), 1)))),
        _grpc("unknown top-level field 30", "ComputeLoss",
              _loss(trajectory=good).SerializeToString() + b"\xf0\x01\x01"),
        _grpc("unknown field in the GAE message", "ComputeAdvantage", _unknown_in_gae(good)),
        _grpc("model name of 16 KB", "ComputeAdvantage",
              pb.ComputeAdvantageRequest(model_name="m" * 16_000, trajectory=good)),
        _grpc("GetModel of an unknown model", "GetModel", pb.GetModelRequest(model_name="nope")),
        _grpc("GetParameters with a negative chunk size", "GetParameters",
              pb.GetParametersRequest(max_chunk_bytes=-5)),
    ]  # fmt: skip
    for note, shape, raw in (
        ("zero-size reward with a 2**62 dimension", [0, 2**62, 4], b""),
        ("reward with 64 dimensions", [1] * 64, b"\0" * 4),
        ("negative dimension", [2, -3], b""),
        ("raw_data shorter than the shape", [2, 4], b"\0" * 7),
    ):
        trajectory = pb.Trajectory(
            reward=pb.Tensor(dtype=pb.DTYPE_FLOAT32, shape=shape, raw_data=raw),
            done=pb.Tensor(dtype=pb.DTYPE_BOOL, shape=shape, raw_data=b"\0" * (len(raw) // 4)),
        )
        cases.append(
            _grpc(note, "ComputeAdvantage", pb.ComputeAdvantageRequest(trajectory=trajectory))
        )
        cases.append(_grpc(note + ", loss", "ComputeLoss", _loss(trajectory=trajectory)))
    for steps, note in (((0,), "B = 0"), ((2,), "T = 0")):
        shape = (*steps, 0) if note == "T = 0" else (0, 4)
        empty = full_trajectory(random_batch(shape[:1], shape[1]))
        cases.append(_grpc(f"ComputeLoss with {note}", "ComputeLoss", _loss(trajectory=empty)))
    kl = _loss(trajectory=good, ppo_kl=pb.KLPENPPOLoss())
    kl.behaviour_distribution["logits"].CopyFrom(tensor(torch.randn(2, 4, 7)))
    cases.append(_grpc("ppo_kl logits with 7 actions for 2", "ComputeLoss", kl))
    bad = random_batch((2,), 4)
    bad.observation[0, 1, 2] = float("inf")
    cases.append(_grpc("Inf observation", "ComputeAdvantage",
                       pb.ComputeAdvantageRequest(trajectory=full_trajectory(bad))))  # fmt: skip
    nan = random_batch((2,), 4)
    nan.sample_log_prob[1, 1] = float("nan")
    cases.append(
        _grpc("NaN sample_log_prob", "ComputeLoss", _loss(trajectory=full_trajectory(nan)))
    )
    overflow = random_batch((2,), 4)
    overflow.sample_log_prob.fill_(-50.0)
    cases.append(_grpc(
        "update with an infinite gradient norm", "ComputeLoss",
        _loss(trajectory=full_trajectory(overflow), apply_update=True,
              advantage=tensor(-torch.ones(2, 4)), value_target=tensor(torch.zeros(2, 4))),
    ))  # fmt: skip
    inf_coeff = _loss(trajectory=good)
    inf_coeff.ppo_clip.options.entropy_coeff = float("inf")
    cases.append(_grpc("entropy_coeff = inf", "ComputeLoss", inf_coeff))
    for knob, value in (("clip_epsilon", -1.0), ("clip_epsilon_low", 2.0)):
        message = _loss(trajectory=good)
        setattr(message.ppo_clip, knob, value)
        cases.append(_grpc(f"ppo_clip.{knob} = {value}", "ComputeLoss", message))
    gamma = pb.ComputeAdvantageRequest(trajectory=good)
    gamma.gae.gamma.scalar = float("nan")
    cases.append(_grpc("gamma = NaN", "ComputeAdvantage", gamma))
    per_step = pb.ComputeAdvantageRequest(trajectory=good)
    per_step.td_lambda.lmbda.per_step.CopyFrom(tensor(torch.ones(3, 3)))
    cases.append(_grpc("per-step lmbda of the wrong shape", "ComputeAdvantage", per_step))
    version = _loss(trajectory=good, apply_update=True, expected_parameter_version=2**62)
    cases.append(_grpc("expected_parameter_version 2**62", "ComputeLoss", version))
    return cases


def _mutate_bytes(rng: random.Random, payload: bytes) -> bytes:
    data = bytearray(payload)
    for _ in range(rng.randint(1, 6)):
        kind = rng.random()
        position = rng.randrange(max(len(data), 1))
        if kind < 0.4 and data:
            data[position] ^= 1 << rng.randrange(8)
        elif kind < 0.6:
            data[position:position] = rng.randbytes(rng.randint(1, 8))
        elif kind < 0.8 and data:
            del data[position : position + rng.randint(1, 16)]
        else:
            data = data[: rng.randrange(len(data) + 1)]
    return bytes(data)


def _mutate_message(rng: random.Random) -> pb.Message:
    batch = random_batch((rng.randint(1, 3),), rng.randint(1, 6), seed=rng.randrange(100))
    trajectory = (full_trajectory if rng.random() < 0.7 else compact_trajectory)(batch)
    fields = ["reward", "done", "terminated", "action", "sample_log_prob", "state_value"]
    for field in rng.sample(fields, rng.randint(1, 3)):
        if rng.random() < 0.3:
            trajectory.ClearField(field)
        else:
            getattr(trajectory, field).CopyFrom(
                pb.Tensor(
                    dtype=rng.randrange(10),
                    shape=[rng.randint(-1, 6) for _ in range(rng.randint(0, 4))],
                    raw_data=rng.randbytes(rng.randint(0, 64)),
                )
            )
    trajectory.form = rng.randrange(4)
    if rng.random() < 0.5:
        request = pb.ComputeAdvantageRequest(trajectory=trajectory)
        getattr(request, rng.choice(["td0", "td1", "td_lambda", "gae", "vtrace"])).SetInParent()
    else:
        request = pb.ComputeLossRequest(trajectory=trajectory, apply_update=rng.random() < 0.3)
        getattr(
            request, rng.choice(["ppo_clip", "ppo_kl", "ppo", "a2c", "reinforce", "impala"])
        ).SetInParent()
        request.expected_parameter_version = rng.choice([0, -1, 2**40])
    return request


def random_grpc_cases(count: int, seed: int = 0) -> list[dict[str, Any]]:
    """Seeded mutations: structural (random tensors in valid requests) and byte-level."""
    rng = random.Random(seed)
    cases = []
    for index in range(count):
        message = _mutate_message(rng)
        rpc = (
            "ComputeAdvantage" if isinstance(message, pb.ComputeAdvantageRequest) else "ComputeLoss"
        )
        payload = message.SerializeToString()
        if index % 2:
            payload = _mutate_bytes(rng, payload)
        cases.append(_grpc(f"random {index}", rpc, payload))
    return cases


def _rest(note: str, method: str, path: str, body: str | None = None,
          headers: dict[str, str] | None = None) -> dict[str, Any]:  # fmt: skip
    return {"note": note, "method": method, "path": path, "body": body,
            "headers": headers or {"content-type": "application/json"}}  # fmt: skip


def rest_cases(base: dict[str, Any]) -> list[dict[str, Any]]:
    """Hand-written bad REST requests; `base` is a valid /v1/advantage body."""

    def with_(**changes: Any) -> str:
        body = copy.deepcopy(base)
        body.update(changes)
        return json.dumps(body)

    nested = copy.deepcopy(base)
    nested["trajectory"]["next"] = {"reward": nested["trajectory"]["next.reward"]}
    booleans = copy.deepcopy(base)
    booleans["trajectory"]["next.reward"] = [True] * len(base["trajectory"]["next.reward"])
    empty = copy.deepcopy(base)
    empty["trajectory"]["next.done"] = []
    big = "1" * 400
    return [
        _rest("text/plain from a foreign origin, apply_update", "POST", "/v1/loss",
              with_(apply_update=True),
              {"content-type": "text/plain", "origin": "http://evil.example"}),
        _rest("foreign Host", "POST", "/v1/advantage", with_(),
              {"content-type": "application/json", "host": "evil.example"}),
        _rest("400-digit gamma", "POST", "/v1/advantage",
              json.dumps(base)[:-1] + f', "estimator": {{"name": "gae", "gamma": {big}}}}}'),
        _rest("400-digit clip_epsilon", "POST", "/v1/loss",
              json.dumps(base)[:-1] + f', "loss": {{"name": "ppo_clip", "clip_epsilon": {big}}}}}'),
        _rest("expected_parameter_version 2**70", "POST", "/v1/loss",
              with_(expected_parameter_version=2**70)),
        _rest('"form": ["full"]', "POST", "/v1/advantage", with_(form=["full"])),
        _rest("JSON nested 5,000 deep", "POST", "/v1/advantage", "[" * 5000 + "]" * 5000),
        _rest("flat and nested next.reward", "POST", "/v1/advantage", json.dumps(nested)),
        _rest("booleans as rewards", "POST", "/v1/advantage", json.dumps(booleans)),
        _rest("empty done list", "POST", "/v1/advantage", json.dumps(empty)),
        _rest("not JSON", "POST", "/v1/advantage", "{'single': quotes}"),
        {**_rest("not UTF-8", "POST", "/v1/advantage"), "body_b64": NOT_UTF8},
        _rest("debug sample seed 2**70", "GET", f"/debug/sample?seed={2**70}"),
        _rest("debug sample steps 0", "GET", "/debug/sample?steps=0"),
        _rest("unknown model", "GET", "/v1/models/" + "x" * 5000),
    ]  # fmt: skip


_JSON_VALUES: list[Any] = [None, True, False, 0, -1, 2**80, 1e308, -1e-308, "", "gae",
                           "x" * 300, [], [[]], [1, "a"], {}, {"name": 1}, [[True, 2.5]],
                           [None] * 3]  # fmt: skip


def random_rest_cases(base: dict[str, Any], count: int, seed: int = 0) -> list[dict[str, Any]]:
    """Seeded mutations of a valid body: random JSON values at random known places."""
    rng = random.Random(seed)
    paths = [("model_name",), ("dtype",), ("torchrl_shapes",), ("form",), ("estimator",),
             ("estimator", "gamma"), ("estimator", "lmbda"), ("loss",), ("loss", "clip_epsilon"),
             ("apply_update",), ("advantage",), ("behaviour_distribution",)]  # fmt: skip
    paths += [("trajectory", key) for key in base["trajectory"]]
    cases = []
    for index in range(count):
        body: Any = copy.deepcopy(base)
        for _ in range(rng.randint(1, 4)):
            path = rng.choice(paths)
            target = body
            for part in path[:-1]:
                if not isinstance(target.get(part), dict):
                    target[part] = {"name": "gae"}
                target = target[part]
            target[path[-1]] = copy.deepcopy(rng.choice(_JSON_VALUES))
        if rng.random() < 0.05:
            body = copy.deepcopy(rng.choice(_JSON_VALUES))
        route = rng.choice(["/v1/advantage", "/v1/loss"])
        cases.append(_rest(f"random {index}", "POST", route, json.dumps(body)))
    return cases


def _write(name: str, cases: list[dict[str, Any]]) -> None:
    CORPUS.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(case, ensure_ascii=True, sort_keys=True) for case in cases]
    (CORPUS / name).write_text("\n".join(lines) + "\n")


def main() -> None:
    """Write the corpus files; the REST base body is a fixed 5-step sample of the demo model."""
    from service.api.rest.sample import sample_request
    from service.models.demo import demo_model

    base = sample_request(demo_model(torch.device("cpu")), 5, 0)
    _write("grpc.jsonl", grpc_cases() + random_grpc_cases(RANDOM_GRPC_CASES))
    _write("rest.jsonl", rest_cases(base) + random_rest_cases(base, RANDOM_REST_CASES))
    print(f"wrote {CORPUS}", file=sys.stderr)


if __name__ == "__main__":
    main()
