"""impala_loss against DI-engine's vtrace_error_* maths (re-typed here, time-major) and TorchRL."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Categorical, Independent, Normal
from torchrl.objectives.value.functional import vtrace_advantage_estimate

from service.distributions import make_distribution
from service.losses import impala, impala_loss

F64 = torch.float64
TOL = {"atol": 1e-10, "rtol": 0.0}
T, B, N = 7, 5, 3


# --- DI-engine's ding/rl_utils/vtrace.py, re-typed: (T, B) layout, value (T + 1, B) ------------
def di_vtrace_error(target, behaviour, action, value, reward, weight, *, gamma, lambda_, rho_clip,
                    c_clip, rho_pg_clip, discrete):  # fmt: skip
    def make(out):
        if discrete:
            return Categorical(logits=out)
        return Independent(Normal(loc=out["mu"], scale=out["sigma"]), 1)

    with torch.no_grad():
        target_d = make({k: v.detach() for k, v in target.items()} if not discrete else target)
        is_ = torch.exp(target_d.log_prob(action) - make(behaviour).log_prob(action))
        rhos = is_.clamp(max=rho_clip)
        cs = is_.clamp(max=c_clip)
        deltas = rhos * (reward + gamma * value[1:] - value[:-1])
        return_ = value[:-1].clone()
        item = 0.0
        for t in reversed(range(reward.shape[0])):
            item = deltas[t] + gamma * lambda_ * cs[t] * item
            return_[t] += item
        pg_rhos = is_.clamp(max=rho_pg_clip)
        return_t_plus_1 = torch.cat([return_[1:], value[-1:]], 0)
        adv = pg_rhos * (reward + gamma * return_t_plus_1 - value[:-1])
    dist = make(target)
    pg_loss = -(dist.log_prob(action) * adv * weight).mean()
    value_loss = (F.mse_loss(value[:-1], return_, reduction="none") * weight).mean()
    entropy_loss = (dist.entropy() * weight).mean()
    return pg_loss, value_loss, entropy_loss


def bt1(x):  # (T, B) -> [B, T, 1]
    return x.transpose(0, 1).unsqueeze(-1)


def _data(discrete, seed):
    g = torch.Generator().manual_seed(seed)
    if discrete:
        target = torch.randn(T, B, N, dtype=F64, generator=g).requires_grad_(True)
        behaviour = target.detach() + 0.7 * torch.randn(T, B, N, dtype=F64, generator=g)
        action = Categorical(logits=behaviour).sample()
        leaves = [target]
    else:
        mu = torch.randn(T, B, N, dtype=F64, generator=g).requires_grad_(True)
        log_sigma = (0.3 * torch.randn(T, B, N, dtype=F64, generator=g)).requires_grad_(True)
        target = {"mu": mu, "sigma": log_sigma.exp()}
        behaviour = {
            "mu": mu.detach() + 0.3 * torch.randn(T, B, N, dtype=F64, generator=g),
            "sigma": (
                log_sigma.detach() + 0.2 * torch.randn(T, B, N, dtype=F64, generator=g)
            ).exp(),
        }
        action = torch.randn(T, B, N, dtype=F64, generator=g)
        leaves = [mu, log_sigma]
    value = torch.randn(T + 1, B, dtype=F64, generator=g).requires_grad_(True)
    reward = torch.randn(T, B, dtype=F64, generator=g)
    weight = torch.rand(T, B, dtype=F64, generator=g) + 0.5
    return target, behaviour, action, value, reward, weight, [*leaves, value]


def _grads(loss, leaves):
    return torch.autograd.grad(loss, leaves, retain_graph=True)


@pytest.mark.parametrize("discrete", [True, False])
@pytest.mark.parametrize(
    "hp",
    [
        {"gamma": 0.99, "lambda_": 0.95, "rho_clip": 1.0, "c_clip": 1.0, "rho_pg_clip": 1.0},
        {"gamma": 0.9, "lambda_": 0.7, "rho_clip": 1.3, "c_clip": 0.8, "rho_pg_clip": 1.1},
    ],
)
def test_impala_matches_di_engine(discrete, hp):
    target, behaviour, action, value, reward, weight, leaves = _data(discrete, seed=int(discrete))
    pg, vl, ent = di_vtrace_error(target, behaviour, action, value, reward, weight,
                                  discrete=discrete, **hp)  # fmt: skip
    critic_coeff, entropy_coeff = 0.5, 0.01
    di_total = pg + critic_coeff * vl - entropy_coeff * ent
    di_grads = _grads(di_total, leaves)

    if discrete:
        dist = make_distribution("categorical", {"logits": target.transpose(0, 1)})
        beh = make_distribution("categorical", {"logits": behaviour.transpose(0, 1)})
        act = action.transpose(0, 1)
    else:

        def params(out):
            return {"loc": out["mu"].transpose(0, 1), "scale": out["sigma"].transpose(0, 1)}

        dist = make_distribution("normal", params(target))
        beh = make_distribution("normal", params(behaviour))
        act = action.transpose(0, 1)
    out = impala_loss(
        dist,
        act,
        beh.log_prob(act),
        bt1(value[:-1]),
        bt1(value[1:]).detach(),
        bt1(reward),
        torch.zeros(B, T, 1, dtype=torch.bool),
        gamma=hp["gamma"],
        lmbda=hp["lambda_"],
        rho_thresh=hp["rho_clip"],
        c_thresh=hp["c_clip"],
        rho_pg_thresh=hp["rho_pg_clip"],
        weight=bt1(weight),
        critic_coeff=critic_coeff,
        entropy_coeff=entropy_coeff,
    )
    torch.testing.assert_close(out["loss_objective"], pg, **TOL)
    torch.testing.assert_close(out["loss_critic"], critic_coeff * vl, **TOL)
    torch.testing.assert_close(out["entropy"], ent.detach(), **TOL)
    torch.testing.assert_close(out["loss_entropy"], -entropy_coeff * ent, **TOL)
    torch.testing.assert_close(out["loss"], di_total, **TOL)
    for ours, theirs in zip(_grads(out["loss"], leaves), di_grads, strict=True):
        torch.testing.assert_close(ours, theirs, **TOL)
    assert all(v.shape == () for v in out.values())


def _episodes(seed, shape=(B, T, 1)):
    g = torch.Generator().manual_seed(seed)
    log_pi = torch.randn(shape, dtype=F64, generator=g) * 0.5
    log_mu = log_pi + torch.randn(shape, dtype=F64, generator=g) * 0.5
    sv = torch.randn(shape, dtype=F64, generator=g)
    nsv = torch.randn(shape, dtype=F64, generator=g)
    reward = torch.randn(shape, dtype=F64, generator=g)
    done = torch.rand(shape, generator=g) < 0.25
    terminated = done & (torch.rand(shape, generator=g) < 0.5)  # some truncations
    return log_pi, log_mu, sv, nsv, reward, done, terminated


@pytest.mark.parametrize("rho,c", [(1.0, 1.0), (1.5, 0.7)])
def test_vtrace_matches_torchrl_at_lambda_one(rho, c):
    fn = impala._vtrace
    log_pi, log_mu, sv, nsv, reward, done, terminated = _episodes(seed=3)
    t64 = lambda x: torch.tensor(x, dtype=F64)  # noqa: E731  (exact float64 reference)
    adv_ref, vs_ref = vtrace_advantage_estimate(
        t64(0.97), log_pi, log_mu, sv, nsv, reward, done, terminated, t64(rho), t64(c)
    )
    adv, vs = fn(0.97, log_pi, log_mu, sv, nsv, reward, done, terminated, rho, c, lmbda=1.0)
    torch.testing.assert_close(vs, vs_ref, **TOL)
    torch.testing.assert_close(adv, adv_ref, **TOL)


def test_vtrace_splits_at_episode_boundaries():
    """With λ < 1: a trace cut by ``done`` equals the pieces computed separately."""
    log_pi, log_mu, sv, nsv, reward, _, _ = _episodes(seed=4)
    done = torch.zeros(B, T, 1, dtype=torch.bool)
    done[:, 2] = True
    terminated = done.clone()
    terminated[:2] = False  # rows 0-1 truncated at t=2, others terminated
    kw = {"lmbda": 0.8, "rho_pg_thresh": 1.2}
    args = (log_pi, log_mu, sv, nsv, reward)
    adv, vs = impala._vtrace(0.9, *args, done, terminated, 1.1, 0.9, **kw)
    head = [x[:, :3] for x in args]
    tail = [x[:, 3:] for x in args]
    adv_h, vs_h = impala._vtrace(0.9, *head, done[:, :3], terminated[:, :3], 1.1, 0.9, **kw)
    adv_t, vs_t = impala._vtrace(0.9, *tail, done[:, 3:], terminated[:, 3:], 1.1, 0.9, **kw)
    torch.testing.assert_close(vs, torch.cat([vs_h, vs_t], 1), **TOL)
    torch.testing.assert_close(adv, torch.cat([adv_h, adv_t], 1), **TOL)


def test_nan_bootstrap_at_terminated_step_is_accepted():
    _log_pi, log_mu, sv, nsv, reward, done, terminated = _episodes(seed=5)
    nsv = nsv.clone()
    nsv[terminated] = float("nan")
    dist = make_distribution("categorical", {"logits": torch.randn(B, T, N, dtype=F64)})
    action = torch.zeros(B, T, dtype=torch.long)
    out = impala_loss(dist, action, log_mu.squeeze(-1), sv, nsv, reward, done, terminated)
    assert all(torch.isfinite(v) for v in out.values())
    nsv[~terminated & ~done] = float("nan")
    with pytest.raises(ValueError, match="next_state_value"):
        impala_loss(dist, action, log_mu.squeeze(-1), sv, nsv, reward, done, terminated)
