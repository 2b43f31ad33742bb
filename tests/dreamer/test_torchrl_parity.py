"""The service's DreamerV3 losses against TorchRL 0.14.1's on the same networks and the same
random draws (seeded; the service draws in TorchRL's order), in float64: loss values and each
optimizer group's gradients within 1e-5 relative."""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict

from service.losses.dreamer import lambda_return
from service.runtime.dreamer.behaviour import behaviour_losses
from service.runtime.dreamer.imagination import imagine
from service.runtime.dreamer.learner import DreamerInputs, dreamer_losses
from service.runtime.dreamer.replay import Replay
from service.runtime.dreamer.state import training_state
from service.runtime.dreamer.update import group_parameters
from tests.support.dreamer import make_nets, replay_tensordict, service_model, torchrl_dreamer

N, H, B, T = 6, 5, 3, 7
RTOL = 1e-5
torch.set_default_dtype(torch.float32)


def _close(ours: torch.Tensor | float, theirs: torch.Tensor | float, what: str) -> None:
    ours, theirs = torch.as_tensor(ours).double(), torch.as_tensor(theirs).double()
    scale = float(theirs.abs().max()) or 1.0
    error = float((ours - theirs).detach().abs().max()) / scale
    assert error <= RTOL, f"{what}: relative error {error:.3g} (ours {ours}, TorchRL {theirs})"


def _grads_close(ours, theirs, what: str) -> None:
    assert len(ours) == len(theirs)
    for index, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        assert float(b.abs().max()) > 0, f"{what}[{index}]: TorchRL's gradient is zero"
        _close(a, b, f"{what}[{index}]")


def _start(seed: int, sizes) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    index = torch.randint(0, sizes.num_classes, (N, sizes.num_categoricals), generator=generator)
    state = torch.nn.functional.one_hot(index, sizes.num_classes).double().reshape(N, -1)
    belief = torch.randn(N, sizes.belief, dtype=torch.float64, generator=generator)
    return state, belief


def _replay(seed: int, sizes):
    generator = torch.Generator().manual_seed(seed)
    observation = torch.randn(B, T, sizes.observation, dtype=torch.float64, generator=generator)
    action = torch.rand(B, T, sizes.action, dtype=torch.float64, generator=generator) * 2 - 1
    reward = torch.randn(B, T, dtype=torch.float64, generator=generator) * 3
    is_first = torch.zeros(B, T, dtype=torch.bool)
    is_first[:, 0] = True
    is_first[1, 4] = True
    terminated = torch.zeros(B, T, dtype=torch.bool)
    terminated[1, 3] = True
    replay = Replay(
        observation={"observation": observation},
        action=action,
        reward=reward,
        is_first=is_first,
        terminated=terminated,
    )
    td = replay_tensordict(observation, action, reward, is_first, terminated, sizes)
    return replay, td


KNOBS = {"gamma": 0.99, "lmbda": 0.95, "imagination_horizon": H}


@pytest.mark.parametrize("use_reinforce", [False, True])
def test_actor_loss_matches_torchrl(use_reinforce: bool) -> None:
    nets = make_nets()
    model = service_model(nets)
    reference = torchrl_dreamer(nets, horizon=H, actor_kwargs={"use_reinforce": use_reinforce})
    state, belief = _start(1, nets.sizes)
    knobs = {**KNOBS, "use_reinforce": use_reinforce}
    inputs = DreamerInputs("dreamer_v3_actor", actor_knobs=knobs, start=(state, belief))
    actor_params = group_parameters(model, "actor")
    for call in range(2):  # the second call starts from the return EMAs of the first
        torch.manual_seed(10 + call)
        steps, terms, _, behaviour = dreamer_losses(model, inputs, 64)
        ours = torch.autograd.grad(steps["actor"].loss, actor_params)
        model.dreamer.return_low, model.dreamer.return_high = behaviour.return_range
        torch.manual_seed(10 + call)
        theirs_td, _ = reference.actor_loss(TensorDict(state=state, belief=belief, batch_size=[N]))
        theirs = torch.autograd.grad(theirs_td["loss_actor"], actor_params)
        for key in ("loss_actor", "actor_entropy", "return_low", "return_high", "return_scale"):
            _close(terms[key].detach(), theirs_td[key].detach(), key)
        _close(terms["continuation_mean"], theirs_td["continuation_mean"], "continuation_mean")
        _grads_close(ours, theirs, "actor gradient")


@pytest.mark.parametrize("value_loss", ["symlog_mse", "two_hot"])
def test_value_loss_with_slow_critic_matches_torchrl(value_loss: str) -> None:
    nets = make_nets(critic_bins=255 if value_loss == "two_hot" else 0)
    model = service_model(nets)
    reference = torchrl_dreamer(
        nets,
        horizon=H,
        value_kwargs={"slow_critic_regularization": 1.0, "value_loss": value_loss},
    )
    # A slow critic different from the critic (both sides start it as a copy, then move it).
    with torch.no_grad():
        for p in reference.value_loss.target_value_model_params.values(True, True):
            p.add_(0.05)
    slow = training_state(model).slow_critic_for(model)
    with torch.no_grad():
        for p in slow.parameters():
            p.add_(0.05)
    state, belief = _start(2, nets.sizes)
    knobs = {**KNOBS, "slow_critic_regularization": 1.0, "value_loss": value_loss}
    torch.manual_seed(3)
    imagined = imagine(model, state, belief, H)
    ours_out = behaviour_losses(model, imagined, knobs, actor=True, value=True)
    critic_params = group_parameters(model, "critic")
    ours = torch.autograd.grad(ours_out.value, critic_params)
    torch.manual_seed(3)
    _, fake = reference.actor_loss(TensorDict(state=state, belief=belief, batch_size=[N]))
    theirs_td, _ = reference.value_loss(fake.detach())
    theirs = torch.autograd.grad(theirs_td["loss_value"], critic_params)
    _close(ours_out.value.detach(), theirs_td["loss_value"].detach(), "loss_value")
    _close(ours_out.metrics["value_slow_loss"], theirs_td["value_slow_loss"], "value_slow_loss")
    assert float(theirs_td["value_slow_loss"]) > 0
    _grads_close(ours, theirs, "critic gradient")


@pytest.mark.parametrize("kl_mode", ["balanced", "separate"])
def test_model_loss_matches_torchrl(kl_mode: str) -> None:
    nets = make_nets()
    model = service_model(nets)
    reference = torchrl_dreamer(nets, model_kwargs={"kl_mode": kl_mode, "unimix": 0.01})
    replay, td = _replay(4, nets.sizes)
    knobs = {"lambda_continue": 1.0, "kl_mode": kl_mode, "unimix": 0.01}
    inputs = DreamerInputs("dreamer_v3_model", model_knobs=knobs, replay=replay)
    params = group_parameters(model, "world_model")
    torch.manual_seed(5)
    steps, terms, _, _ = dreamer_losses(model, inputs, 64)
    ours = torch.autograd.grad(steps["world_model"].loss, params, allow_unused=True)
    torch.manual_seed(5)
    theirs_td, _ = reference.model_loss(td)
    names = [k for k in theirs_td.keys() if k.startswith("loss_")]  # noqa: SIM118 (a TensorDict iterates rows)
    assert "loss_model_continue" in names and len(names) >= 4
    for key in names:
        _close(terms[key].detach(), theirs_td[key].detach().squeeze(), key)
    total = sum(theirs_td[k].squeeze() for k in names)
    theirs = torch.autograd.grad(total, params, allow_unused=True)
    for index, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        assert (a is None) == (b is None)
        if a is not None:
            _close(a, b, f"world-model gradient[{index}]")


def test_one_call_dreamer_v3_matches_torchrls_combined_loss() -> None:
    nets = make_nets()
    model = service_model(nets)
    reference = torchrl_dreamer(nets, horizon=H, value_kwargs={"slow_critic_regularization": 1.0})
    replay, td = _replay(6, nets.sizes)
    value_knobs = {**KNOBS, "slow_critic_regularization": 1.0}
    inputs = DreamerInputs(
        "dreamer_v3",
        model_knobs={"lambda_continue": 1.0},
        actor_knobs=KNOBS,
        value_knobs=value_knobs,
        replay=replay,
    )
    torch.manual_seed(7)
    steps, terms, _, _ = dreamer_losses(model, inputs, 64)
    torch.manual_seed(7)
    theirs_td = reference.combined(td)
    names = [k for k in theirs_td.keys() if k.startswith("loss_")]  # noqa: SIM118 (rows)
    for key in [k for k in names if k != "loss_replay_value"]:
        _close(terms[key].detach(), theirs_td[key].detach().squeeze(), key)
    for group, key in (("actor", "loss_actor"), ("critic", "loss_value")):
        params = group_parameters(model, group)
        ours = torch.autograd.grad(steps[group].loss, params, retain_graph=True)
        theirs = torch.autograd.grad(theirs_td[key], params, retain_graph=True)
        _grads_close(ours, theirs, f"{group} gradient")


def test_torchrls_target_without_continuation_is_one_step_and_ours_is_the_lambda_return() -> None:
    nets = make_nets(continue_head=False)
    model = service_model(nets)
    reference = torchrl_dreamer(nets, horizon=H, use_continuation=False)
    state, belief = _start(8, nets.sizes)
    torch.manual_seed(9)
    _, fake = reference.actor_loss(TensorDict(state=state, belief=belief, batch_size=[N]))
    reward = fake["next", "reward"].squeeze(-1).detach()
    with torch.no_grad():
        next_value = nets.critic(fake["next", "state"], fake["next", "belief"]).squeeze(-1)
    theirs = fake["lambda_target"].squeeze(-1).detach()
    one_step = reward + 0.99 * next_value
    # TorchRL 0.14.1: the time dimension resolves to the trailing feature dimension (size 1),
    # so its "λ-target" is r_t + γ v_{t+1} at every step.
    _close(theirs, one_step, "TorchRL's target vs the one-step target")
    # Ours, on the same rollout, is eq. 7 of the paper: R_t = r_t + γ((1−λ) v_{t+1} + λ R_{t+1}).
    ours = lambda_return(reward, next_value, torch.ones_like(reward), 0.99, 0.95)
    expected = torch.empty_like(reward)
    following = next_value[:, -1]
    for t in reversed(range(H)):
        following = reward[:, t] + 0.99 * (0.05 * next_value[:, t] + 0.95 * following)
        expected[:, t] = following
    _close(ours, expected, "our λ-return vs the paper's")
    assert float((ours - one_step)[:, :-1].abs().max()) > 1e-3
    # And the server's own rollout, on the same draws, gives that same true λ-return.
    torch.manual_seed(9)
    imagined = imagine(model, state, belief, H)
    _close(imagined.reward, reward, "imagined reward")
    assert torch.equal(imagined.continuation, torch.ones(N, H + 1, dtype=torch.float64))


def test_client_imagined_form_gives_the_server_forms_numbers() -> None:
    nets = make_nets()
    model = service_model(nets)
    state, belief = _start(10, nets.sizes)
    # REINFORCE and no Monte-Carlo entropy: no random draw after the rollout in either form.
    knobs = {**KNOBS, "use_reinforce": True, "entropy_bonus": 0.0}
    knobs["slow_critic_regularization"] = 1.0
    server = DreamerInputs(
        "dreamer_v3_actor", actor_knobs=knobs, value_knobs=knobs, start=(state, belief)
    )
    torch.manual_seed(11)
    server_steps, server_terms, _, _ = dreamer_losses(model, server, 64)
    torch.manual_seed(11)
    with torch.no_grad():
        rollout = imagine(model, state, belief, H)
    client = DreamerInputs(
        "dreamer_v3_actor", actor_knobs=knobs, value_knobs=knobs, imagined=rollout
    )
    client_steps, client_terms, _, _ = dreamer_losses(model, client, 64)
    assert set(client_terms) == set(server_terms)
    for key, value in server_terms.items():
        _close(client_terms[key].detach(), value.detach(), key)
    params = group_parameters(model, "actor")
    _grads_close(
        torch.autograd.grad(client_steps["actor"].loss, params),
        torch.autograd.grad(server_steps["actor"].loss, params),
        "actor gradient (REINFORCE)",
    )
