"""DreamerV3's world-model loss on a replay sequence (TorchRL 0.14.1's `DreamerV3ModelLoss`).

Hafner et al. 2023 (arXiv 2301.04104), eq. 4–5. For replay steps t = 0 … T−1 ([*B, T]) the
caller ran the posterior through the sequence and hands over, per step t: the prior and
posterior logits of the latent at t, the decoded observations, the reward head's output and the
continue head's logit, all read from the posterior latent at t, with the observed targets:

    L_kl      = λ_kl · KL term (`kl`: "balanced", or "separate" = λ_dyn L_dyn + λ_rep L_rep)
    L_reco    = λ_reco · Σ_heads mean_{b,t} Σ_dims (symlog(x̂) − symlog(x))²      ("l2")
    L_reward  = λ_reward · mean_{b,t} twohot-CE(reward logits, r)  or  (symlog r − symlog r̂)²
    L_cont    = λ_cont · mean_{b,t} BCE(logit, (1 − terminated) · continue_target_scale)

(`reco_loss="l1"` takes |·| instead of (·)²; `reco_symlog=False` compares raw values.)
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch.nn import functional as F

from service.losses.dreamer.kl import kl_balanced, kl_separate
from service.losses.dreamer.symlog import symlog
from service.losses.dreamer.two_hot import two_hot_cross_entropy


def dreamer_model_loss(
    prior_logits: torch.Tensor,
    posterior_logits: torch.Tensor,
    reconstruction: Mapping[str, torch.Tensor],
    observation: Mapping[str, torch.Tensor],
    reward_prediction: torch.Tensor,
    reward: torch.Tensor,
    *,
    continue_logit: torch.Tensor | None = None,
    terminated: torch.Tensor | None = None,
    bins: torch.Tensor | None = None,
    lambda_kl: float = 1.0,
    lambda_reco: float = 1.0,
    lambda_reward: float = 1.0,
    lambda_continue: float = 1.0,
    kl_mode: str = "balanced",
    kl_alpha: float = 0.8,
    free_bits: float = 1.0,
    lambda_dynamic: float = 1.0,
    lambda_representation: float = 0.1,
    unimix: float = 0.0,
    reco_loss: str = "l2",
    reco_symlog: bool = True,
    continue_target_scale: float = 1.0,
) -> dict[str, torch.Tensor]:
    """The loss terms (scalars) under TorchRL's names; see the module docstring.

    `reconstruction[k]` / `observation[k]`: [*B, T, *obs_k]; `reward_prediction`: logits
    [*B, T, K] when `bins` is given (two-hot), else the scalar prediction [*B, T];
    `reward`, `terminated`, `continue_logit`: [*B, T]."""
    steps = reward.shape
    out: dict[str, torch.Tensor] = {}
    if kl_mode == "separate":
        dynamics, representation = kl_separate(posterior_logits, prior_logits, free_bits, unimix)
        out["loss_model_dynamic"] = lambda_kl * lambda_dynamic * dynamics
        out["loss_model_representation"] = lambda_kl * lambda_representation * representation
    else:
        out["loss_model_kl"] = lambda_kl * kl_balanced(
            posterior_logits, prior_logits, kl_alpha, free_bits
        )
    reco = reward.new_zeros(())
    for key, target in observation.items():
        prediction = reconstruction[key]
        if reco_symlog:
            target, prediction = symlog(target), symlog(prediction)
        error = target.to(prediction.dtype) - prediction
        distance = error.pow(2) if reco_loss == "l2" else error.abs()
        reco = reco + distance.reshape(*steps, -1).sum(-1).mean()
    out["loss_model_reco"] = lambda_reco * reco
    if bins is not None:
        reward_term = two_hot_cross_entropy(reward_prediction, reward, bins)
    else:
        reward_term = (symlog(reward) - symlog(reward_prediction)).pow(2)
    out["loss_model_reward"] = lambda_reward * reward_term.mean()
    if lambda_continue > 0 and continue_logit is not None and terminated is not None:
        target = (~terminated).to(continue_logit.dtype) * continue_target_scale
        out["loss_model_continue"] = lambda_continue * F.binary_cross_entropy_with_logits(
            continue_logit, target
        )
    return out
