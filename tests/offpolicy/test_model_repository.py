"""Q-networks in model folders: export_model writes them (torch.export and TorchScript), the
server loads them with fresh targets, GetModel describes them, and bad manifests are refused."""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import pytest
import torch

from service.models.demo_offpolicy import GaussianActor, StateActionMLP, mlp
from service.models.export import export_model
from service.models.loading import load_repository
from service.models.manifest import ActionSpec, InputSpec, ManifestError
from service.models.qvalue import TargetUpdateSpec
from service.pb.advantage.v1 import advantage_pb2 as pb
from service.settings import Settings
from tests.support.offpolicy import stub
from tests.support.servers import running_server

CPU = torch.device("cpu")
INPUTS = (InputSpec("observation", (3,)),)


@pytest.mark.parametrize("file_format", ["torch.export", "torchscript"])
def test_exported_ensemble_loads_with_targets_equal_to_it(tmp_path: Path, file_format: str) -> None:
    torch.manual_seed(0)
    members = [StateActionMLP(3, 1, hidden=8) for _ in range(2)]
    export_model(
        tmp_path / "sac",
        "sac",
        INPUTS,
        actor_network=GaussianActor(3, 1, hidden=8),
        action=ActionSpec("tanh_normal", (1,)),
        qvalue_network=members,
        target_update=TargetUpdateSpec(rule="hard", interval=5),
        file_format=file_format,
    )
    manifest = json.loads((tmp_path / "sac" / "model.json").read_text())
    assert manifest["qvalue_network"]["ensemble_size"] == 2
    assert manifest["qvalue_network"]["kind"] == "state_action"
    model = load_repository(tmp_path, CPU)["sac"]
    observation, action = torch.randn(5, 3), torch.rand(5, 1)
    with torch.no_grad():
        expected = torch.stack([m(observation, action)[:, 0] for m in members], dim=1)
        loaded = model.qvalue_network(observation, action).reshape(5, 2)
        target = model.target_qvalue_network(observation, action).reshape(5, 2)
    torch.testing.assert_close(loaded, expected)
    torch.testing.assert_close(target, expected)
    assert model.target_actor_network is not None and model.offpolicy is not None
    with torch.no_grad():  # the targets are copies, not views of the online parameters
        for parameter in model.qvalue_network.parameters():
            parameter.add_(1.0)
        still = model.target_qvalue_network(observation, action).reshape(5, 2)
    torch.testing.assert_close(still, expected)
    with running_server(Settings(model_repository=tmp_path)) as server:
        info = stub(server.port).GetModel(pb.GetModelRequest(model_name="sac")).model
    assert (info.qvalue_network.kind, info.qvalue_network.ensemble_size) == ("state_action", 2)
    assert info.target_update.WhichOneof("rule") == "hard_interval"
    assert info.target_update.hard_interval == 5


def test_an_action_value_head_without_an_actor_is_a_dqn_model(tmp_path: Path) -> None:
    torch.manual_seed(0)
    export_model(
        tmp_path / "dqn",
        "dqn",
        (InputSpec("observation", (4,)),),
        qvalue_network=mlp(4, 3, hidden=8),
        qvalue_kind="action_value",
        num_actions=3,
    )
    model = load_repository(tmp_path, CPU)["dqn"]
    assert model.manifest.qvalue_network.num_actions == 3
    assert model.actor_network is None and model.target_actor_network is None
    with running_server(Settings(model_repository=tmp_path)) as server:
        names = [
            t.name
            for chunk in stub(server.port).GetParameters(pb.GetParametersRequest(model_name="dqn"))
            for t in chunk.tensors
        ]
        with pytest.raises(grpc.RpcError) as raised:
            stub(server.port).ComputeLoss(
                pb.ComputeLossRequest(
                    model_name="dqn",
                    sac=pb.SACLoss(),
                    trajectory=pb.Trajectory(
                        reward=pb.Tensor(dtype=pb.DTYPE_FLOAT32, shape=[1], raw_data=bytes(4)),
                        done=pb.Tensor(dtype=pb.DTYPE_BOOL, shape=[1], raw_data=bytes(1)),
                    ),
                )
            )
    assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert {n.split(".")[0] for n in names} == {
        "qvalue_network",
        "target_qvalue_network",
        "log_alpha",
        "offpolicy",
    }


@pytest.mark.parametrize(
    ("section", "detail"),
    [
        ({"file": "q.pt2", "kind": "q"}, "qvalue_network.kind: expected one of"),
        (
            {"file": "q.pt2", "ensemble_size": 0},
            "qvalue_network.ensemble_size: expected an integer ≥ 1",
        ),
        (
            {"file": "q.pt2", "kind": "action_value"},
            "qvalue_network.num_actions: an action_value head needs",
        ),
        ({"file": "q.pt2", "members": 2}, "qvalue_network: unknown keys ['members']"),
    ],
)
def test_malformed_qvalue_sections_are_refused(tmp_path: Path, section: dict, detail: str) -> None:
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "model.json").write_text(
        json.dumps(
            {
                "name": "bad",
                "inputs": [{"name": "observation", "shape": [3]}],
                "qvalue_network": section,
            }
        )
    )
    with pytest.raises(ManifestError, match="qvalue_network") as raised:
        load_repository(tmp_path, CPU)
    assert detail in str(raised.value)


def test_malformed_target_rules_are_refused(tmp_path: Path) -> None:
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "model.json").write_text(
        json.dumps(
            {
                "name": "bad",
                "inputs": [{"name": "observation", "shape": [4]}],
                "qvalue_network": {"file": "q.pt2", "kind": "action_value", "num_actions": 2},
                "target_update": {"rule": "soft", "tau": 1.5},
            }
        )
    )
    with pytest.raises(ManifestError, match=r"target_update.tau: expected a value in \(0, 1\]"):
        load_repository(tmp_path, CPU)


def test_an_ensemble_size_the_network_does_not_have_is_refused_at_load(tmp_path: Path) -> None:
    torch.manual_seed(0)
    export_model(
        tmp_path / "sac",
        "sac",
        INPUTS,
        actor_network=GaussianActor(3, 1, hidden=8),
        action=ActionSpec("tanh_normal", (1,)),
        qvalue_network=[StateActionMLP(3, 1, hidden=8) for _ in range(2)],
    )
    path = tmp_path / "sac" / "model.json"
    manifest = json.loads(path.read_text())
    manifest["qvalue_network"]["ensemble_size"] = 3  # the file holds two members
    path.write_text(json.dumps(manifest))
    with pytest.raises(ManifestError, match=r"returned \[2, 2, 1\] for 2 rows.*ensemble_size=3"):
        load_repository(tmp_path, CPU)
