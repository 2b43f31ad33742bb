"""Model repository: export torch modules, load the folder, serve it, refuse bad manifests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from service.cli import main as cli_main
from service.models.demo import demo_networks
from service.models.export import export_model
from service.models.loading import load_repository
from service.models.manifest import ActionSpec, Defaults, InputSpec, ManifestError
from service.pb.advantage.v1 import advantage_pb2 as pb
from service.settings import Settings
from tests.support.servers import running_server
from tests.support.wire import array, full_trajectory, random_batch, stub, tensor


class GaussianActor(nn.Module):
    """Two inputs in, (loc, scale) out: exercises multi-key inputs and a normal policy."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Linear(4 + 2, 2 * 3)

    def forward(self, observation: torch.Tensor, goal: torch.Tensor):
        loc, raw_scale = self.body(torch.cat([observation, goal], -1)).chunk(2, -1)
        return loc, nn.functional.softplus(raw_scale) + 1e-3


class TwoInputValue(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Linear(4 + 2, 1)

    def forward(self, observation: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        return self.body(torch.cat([observation, goal], -1))


@pytest.fixture(scope="module")
def repository(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    value, actor = demo_networks()
    export_model(
        root / "cartpole",
        "cartpole",
        [InputSpec("observation", (4,))],
        value_network=value,
        actor_network=actor,
        action=ActionSpec("categorical", num_actions=2),
        defaults=Defaults(gamma=0.9, lmbda=0.8),
    )
    export_model(
        root / "reacher",
        "reacher",
        [InputSpec("observation", (4,)), InputSpec("goal", (2,))],
        value_network=TwoInputValue(),
        actor_network=GaussianActor(),
        action=ActionSpec("normal", shape=(3,)),
        file_format="torchscript",
    )
    cli_main(["export-model", str(root / "demo"), "--name", "demo"])
    return root


def test_exported_networks_reload_with_the_same_outputs(repository: Path) -> None:
    models = load_repository(repository, torch.device("cpu"))
    assert sorted(models) == ["cartpole", "demo", "reacher"]
    value, _ = demo_networks()
    x = torch.randn(5, 4)
    torch.testing.assert_close(models["cartpole"].value([x]), value(x).squeeze(-1))
    assert (repository / "reacher" / "value.pt").is_file()  # TorchScript
    assert (repository / "cartpole" / "value.pt2").is_file()  # torch.export


def test_served_repository_uses_each_models_defaults_and_inputs(repository: Path) -> None:
    with running_server(Settings(model_repository=repository)) as server:
        api = stub(server.target)
        names = [m.name for m in api.ListModels(pb.ListModelsRequest()).models]
        assert names == ["cartpole", "demo", "reacher"]
        batch = random_batch((2,), steps=10, seed=3)
        # An empty model name picks "demo" among several models.
        assert (
            api.ComputeAdvantage(
                pb.ComputeAdvantageRequest(trajectory=full_trajectory(batch))
            ).model_name
            == "demo"
        )
        cart = api.ComputeAdvantage(
            pb.ComputeAdvantageRequest(model_name="cartpole", trajectory=full_trajectory(batch))
        )
        # Same networks as the demo but γ = 0.9, λ = 0.8 from its manifest.
        demo = api.ComputeAdvantage(
            pb.ComputeAdvantageRequest(
                model_name="demo",
                trajectory=full_trajectory(batch),
                gae=pb.GAE(gamma=pb.Coefficient(scalar=0.9), lmbda=pb.Coefficient(scalar=0.8)),
            )
        )
        torch.testing.assert_close(array(cart.advantage), array(demo.advantage))

        trajectory = full_trajectory(batch)
        trajectory.action.CopyFrom(tensor(torch.randn(2, 10, 3)))
        trajectory.observation["goal"].CopyFrom(tensor(torch.randn(2, 10, 2)))
        trajectory.next_observation["goal"].CopyFrom(tensor(torch.randn(2, 10, 2)))
        reacher = api.ComputeAdvantage(
            pb.ComputeAdvantageRequest(
                model_name="reacher", trajectory=trajectory, vtrace=pb.VTrace()
            )
        )
        assert list(reacher.advantage.shape) == [2, 10]
        assert torch.isfinite(array(reacher.advantage)).all()
        info = api.GetModel(pb.GetModelRequest(model_name="reacher")).model
        assert [i.name for i in info.inputs] == ["observation", "goal"]
        assert info.action.distribution == pb.DISTRIBUTION_NORMAL
        assert list(info.action.shape) == [3]


def write_manifest(folder: Path, data: dict) -> Path:
    folder.mkdir(parents=True)
    (folder / "model.json").write_text(json.dumps(data))
    return folder.parent


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ({"inputs": []}, ["missing key 'name'"]),
        (
            {"name": "m", "inputs": [{"name": "o", "shape": [4]}]},
            ["value_network", "actor_network"],
        ),
        (
            {
                "name": "m",
                "inputs": [{"name": "o", "shape": [-1]}],
                "value_network": {"file": "v.pt2"},
            },
            ["inputs[0].shape", "positive"],
        ),
        (
            {
                "name": "m",
                "inputs": [{"name": "o", "shape": [4]}],
                "value_network": {"file": "v.pt2"},
            },
            ["v.pt2", "not found"],
        ),
        (
            {
                "name": "m",
                "inputs": [{"name": "o", "shape": [4]}],
                "actor_network": {"file": "a.pt2"},
                "action": {"distribution": "beta"},
            },
            ["action.distribution", "beta"],
        ),
    ],
)
def test_bad_manifest_is_refused_with_the_key_named(tmp_path: Path, data: dict, words) -> None:
    root = write_manifest(tmp_path / "models" / "m", data)
    with pytest.raises(ManifestError) as error:
        load_repository(root, torch.device("cpu"))
    for word in words:
        assert word in str(error.value)
