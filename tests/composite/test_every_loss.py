"""Every loss takes a padded two-head batch and updates the model, reporting each head's
entropy in the non-aggregate mode where TorchRL does (not A2C); KL-PEN PPO's behaviour
distribution is keyed "<head>.<parameter>" and its KL is 0 when the behaviour policy is the
current one."""

from __future__ import annotations

import math

import pytest
import torch

from service.pb.advantage.v1 import advantage_pb2 as pb
from tests.support import composite as C
from tests.support.servers import running_server
from tests.support.wire import stub, tensor

LOSSES = {
    "impala": pb.ImpalaLoss(),
    "reinforce": pb.ReinforceLoss(),
    "ppo": pb.PPOLoss(),
    "a2c": pb.A2CLoss(),
    "ppo_clip": pb.ClipPPOLoss(),
}


@pytest.mark.parametrize("name", list(LOSSES))
def test_loss_on_a_padded_two_head_batch(name: str) -> None:
    data = C.make_data((3,), steps=6, seed=12)
    mask = torch.arange(6).expand(3, 6) < torch.tensor([[6], [3], [5]])
    model = C.model(seed=6)
    with running_server(models={"two_heads": model}) as server:
        response = stub(server.target).ComputeLoss(
            pb.ComputeLossRequest(
                model_name="two_heads",
                trajectory=C.trajectory(data, per_head=True, mask=mask),
                apply_update=True,
                composite_lp_aggregate=False,
                **{name: LOSSES[name]},
            ),
            timeout=60,
        )
    assert response.updated and model.parameter_version == 1
    assert math.isfinite(response.loss)
    heads = {k: v for k, v in response.metrics.items() if k.startswith("composite_entropy.")}
    if name == "a2c":  # TorchRL's A2CLoss reports the total entropy only
        assert not heads and "entropy" in response.metrics
    elif "entropy" in response.metrics:
        assert len(heads) == 2
        assert response.metrics["entropy"] == pytest.approx(sum(heads.values()), rel=1e-9)


def test_kl_pen_with_the_current_policy_as_behaviour_has_zero_kl() -> None:
    """On a padded batch whose padding holds NaN behaviour parameters."""
    data = C.make_data((2,), steps=5, seed=13)
    model = C.model(seed=7)
    _, actor = C.networks(seed=7)
    with torch.no_grad():
        logits, loc, scale = actor.parts(data.observation)
    mask = torch.tensor([[True] * 5, [True, True, False, False, False]])
    for padded in (logits, loc, scale):  # the padding's parameters are never read
        padded[1, 2:] = float("nan")
    behaviour = {"action.move.logits": logits, "action.aim.loc": loc, "action.aim.scale": scale}
    request = pb.ComputeLossRequest(
        model_name="two_heads",
        trajectory=C.trajectory(data, per_head=False, mask=mask),
        ppo_kl=pb.KLPENPPOLoss(),
    )
    for key, value in behaviour.items():
        request.behaviour_distribution[key].CopyFrom(tensor(value))
    with running_server(models={"two_heads": model}) as server:
        response = stub(server.target).ComputeLoss(request, timeout=60)
        del request.behaviour_distribution["action.aim.scale"]
        with pytest.raises(Exception) as refused:
            stub(server.target).ComputeLoss(request, timeout=60)
    assert response.metrics["kl"] == pytest.approx(0.0, abs=1e-12)
    assert "action.aim.scale" in refused.value.details()
