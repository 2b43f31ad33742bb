"""The golden vectors (proto/testdata/) through the Python client's typed API: every case's
request, built from its `input` with option objects and numpy arrays, must be on the wire exactly
the golden bytes (recorded by a proxy in front of a fresh demo server, and equal as a message
parsed with the client's own generated stubs); the answers must match the golden numbers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from advantage_client import (
    A2C,
    GAE,
    KLPENPPO,
    PPO,
    TD0,
    TD1,
    AdvantageClient,
    AdvantageServiceError,
    ClipPPO,
    Impala,
    ModelInfo,
    Reinforce,
    TDLambda,
    VTrace,
)
from advantage_client._pb.advantage.v1 import advantage_pb2 as client_pb

from tests.support.golden import as_array, compare_answer, described, load_cases
from tests.support.recording_proxy import RecordingProxy
from tests.support.servers import running_server

CASES = load_cases()
ESTIMATORS = {"td0": TD0, "td1": TD1, "td_lambda": TDLambda, "gae": GAE, "vtrace": VTrace}
LOSSES = {
    "ppo_clip": ClipPPO, "ppo": PPO, "ppo_kl": KLPENPPO, "a2c": A2C, "reinforce": Reinforce,
    "impala": Impala,
}  # fmt: skip


@pytest.fixture(scope="module")
def proxy() -> Iterator[RecordingProxy]:
    """A fresh demo server (no other test updates it) behind the recording proxy."""
    with running_server() as server, RecordingProxy(server.target) as recording:
        yield recording


@pytest.fixture(scope="module")
def client(proxy: RecordingProxy) -> Iterator[AdvantageClient]:
    with AdvantageClient(proxy.target, timeout=60) as client:
        yield client


def _arrays(trajectory: dict[str, Any]) -> dict[str, Any]:
    """The trajectory's keyword arrays (observations as {key: array} mappings)."""
    out: dict[str, Any] = {}
    for name, value in trajectory.items():
        if name in ("observation", "next_observation"):
            out[name] = {key: as_array(tensor) for key, tensor in value.items()}
        else:
            out[name] = as_array(value)
    return out


def _estimator(spec: dict[str, Any] | None) -> Any:
    return None if spec is None else ESTIMATORS[spec["kind"]](**spec["knobs"])


def _model_dict(info: ModelInfo) -> dict[str, Any]:
    """The typed ModelInfo in the proto's field and enum names (the golden `expect` shape)."""
    return {
        "name": info.name,
        "inputs": [
            {"name": s.name, "shape": list(s.shape), "dtype": f"DTYPE_{s.dtype.upper()}"}
            for s in info.inputs
        ],
        "has_value_network": info.has_value_network,
        "has_actor_network": info.has_actor_network,
        "action": {
            "distribution": f"DISTRIBUTION_{(info.action.distribution or 'unspecified').upper()}",
            "shape": list(info.action.shape),
            "dtype": f"DTYPE_{info.action.dtype.upper()}",
            "num_actions": info.action.num_actions,
        },
        "parameter_version": info.parameter_version,
        "defaults": {"gamma": info.gamma, "lmbda": info.lmbda},
        "parameter_dtype": f"DTYPE_{info.parameter_dtype.upper()}",
    }


def _call(client: AdvantageClient, rpc: str, spec: dict[str, Any]) -> dict[str, Any]:
    """Run the case through the typed API; the answer in the golden `expect` shape."""
    if rpc == "ComputeAdvantage":
        result = client.compute_advantage(
            model=spec["model"], form=spec["form"], estimator=_estimator(spec.get("estimator")),
            **_arrays(spec["trajectory"]),
        )  # fmt: skip
        fields = ("advantage", "value_target", "state_value", "next_state_value")
        return {
            "model_name": result.model_name,
            "parameter_version": result.parameter_version,
            "tensors": {
                f: described(getattr(result, f)) for f in fields if getattr(result, f) is not None
            },
            "absent": [f for f in fields if getattr(result, f) is None],
        }
    if rpc == "ComputeLoss":
        extra: dict[str, Any] = {}
        if "behaviour_distribution" in spec:
            extra["behaviour_distribution"] = {
                key: as_array(t) for key, t in spec["behaviour_distribution"].items()
            }
        if "expected_parameter_version" in spec:
            extra["expected_parameter_version"] = spec["expected_parameter_version"]
        loss = spec["loss"]
        result = client.compute_loss(
            model=spec["model"], form=spec["form"], estimator=_estimator(spec.get("estimator")),
            loss=LOSSES[loss["kind"]](**loss["knobs"]),
            apply_update=spec.get("apply_update", False), **extra, **_arrays(spec["trajectory"]),
        )  # fmt: skip
        return {
            "model_name": result.model_name,
            "parameter_version": result.parameter_version,
            "updated": result.updated,
            "loss": result.loss,
            "metrics": result.metrics,
        }
    if rpc == "ListModels":
        return {"models": [_model_dict(m) for m in client.list_models()]}
    if rpc == "GetModel":
        return {"model": _model_dict(client.get_model(spec["model"]))}
    if rpc == "GetParameters":
        version, tensors = client.get_parameters(
            spec["model"], prefixes=spec["prefixes"], max_chunk_bytes=spec["max_chunk_bytes"]
        )
        return {
            "parameter_version": version,
            "parameters": {name: described(np.asarray(t)) for name, t in tensors.items()},
        }
    raise ValueError(rpc)


@pytest.mark.parametrize("case", CASES, ids=[case["name"] for case in CASES])
def test_golden_case(case: dict[str, Any], client: AdvantageClient, proxy: RecordingProxy) -> None:
    proxy.clear()
    try:
        answer = {"status": "OK", **_call(client, case["rpc"], case["input"])}
    except AdvantageServiceError as error:
        answer = {"status": error.code.name, "message": error.message}
    sent = proxy.requests(case["rpc"])
    assert len(sent) == 1, f"{len(sent)} {case['rpc']} requests went out"
    message_type = getattr(client_pb, _request_name(case["rpc"]))
    assert message_type.FromString(sent[0]) == message_type.FromString(case["request_bytes"])
    assert sent[0] == case["request_bytes"]
    assert compare_answer(case, answer) == []


def _request_name(rpc: str) -> str:
    service = client_pb.DESCRIPTOR.services_by_name["AdvantageService"]
    return service.methods_by_name[rpc].input_type.name
