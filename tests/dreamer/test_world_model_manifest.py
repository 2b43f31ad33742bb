"""The manifest's `world_model` section: `export_model` writes it and the networks, loading
reads them back (torch.export keeps the sampling and the parameter names), and a malformed
section is refused naming the key."""

from __future__ import annotations

import json

import pytest
import torch

from service.models.dreamer_demo import DreamerSizes, dreamer_manifest, dreamer_networks
from service.models.export import export_model
from service.models.loading import load_model
from service.models.manifest import ManifestError
from service.models.world_model import parse_world_model
from service.models.world_model_export import WorldModelModules


def _export(folder):
    sizes = DreamerSizes()
    world, critic, actor = dreamer_networks(sizes)
    manifest = dreamer_manifest(sizes)
    export_model(
        folder,
        "dm",
        manifest.inputs,
        value_network=critic,
        actor_network=actor,
        action=manifest.action,
        world_model=WorldModelModules(
            prior=world["prior"],
            posterior=world["posterior"],
            encoder=world["encoder"],
            decoder=world["decoder"],
            reward=world["reward"],
            continue_head=None,
            observations=manifest.world_model.observations,
            num_categoricals=4,
            num_classes=4,
            belief_size=16,
            action_size=1,
        ),
    )
    return world


def test_export_and_load_round_trip(tmp_path) -> None:
    world = _export(tmp_path / "dm")
    data = json.loads((tmp_path / "dm" / "model.json").read_text())
    section = data["world_model"]
    assert sorted(section["networks"]) == ["decoder", "encoder", "posterior", "prior", "reward"]
    assert section["optimizers"]["world_model"]["lr"] == 1e-4
    model = load_model(tmp_path / "dm", torch.device("cpu"))
    assert model.world_model is not None and not model.world_model.has_continue
    state, belief, action = torch.zeros(5, 16), torch.randn(5, 16), torch.rand(5, 1)
    torch.manual_seed(0)
    loaded = model.world_model["prior"](state, belief, action)
    torch.manual_seed(0)
    original = world["prior"](state, belief, action)
    for a, b in zip(loaded, original, strict=True):  # the same sample from the same draws
        assert torch.allclose(a, b, atol=1e-6)
    assert set(model.world_model["prior"].state_dict()) == set(world["prior"].state_dict())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: s["networks"].pop("prior"), r"networks: missing \['prior'\]"),
        (lambda s: s.update(num_classes=0), r"num_classes: expected an integer ≥ 1"),
        (
            lambda s: s.update(belief_size=8),
            r"expected inputs \[\('state', \(16,\)\), \('belief', \(8,\)\)\]",
        ),
        (lambda s: s.update(colour="red"), r"unknown keys \['colour'\]"),
        (lambda s: s["optimizers"].update(planner={"lr": 1.0}), r"optimizers\.planner"),
        (lambda s: s["optimizers"]["actor"].update(lr=0), r"optimizers\.actor"),
        (lambda s: s.update(observations=[]), r"observations: at least one"),
    ],
)
def test_a_malformed_section_names_the_key(tmp_path, change, message) -> None:
    _export(tmp_path / "dm")
    data = json.loads((tmp_path / "dm" / "model.json").read_text())
    section = data["world_model"]
    change(section)
    inputs = load_model(tmp_path / "dm", torch.device("cpu")).manifest.inputs
    with pytest.raises(ManifestError, match=message):
        parse_world_model(section, inputs, "model.json")
