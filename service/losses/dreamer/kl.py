"""The world model's KL terms between the posterior and the prior latents, with free bits.

Latents are `num_categoricals` categoricals of `num_classes` classes: logits
[*B, T, num_categoricals, num_classes]. sg(·) stops the gradient.

"balanced" (TorchRL 0.14.1's default, `categorical_kl_balanced`; DreamerV2's KL balancing):

    KL_c(p‖q) = Σ_k p_k (log p_k − log q_k) per categorical c, probabilities clamped ≥ 1e-8
    loss = α · mean(max(free_bits, KL_c(sg(post) ‖ prior)))
         + (1 − α) · mean(max(free_bits, KL_c(post ‖ sg(prior))))

with α = 0.8 and free bits clamping each categorical's KL, then the mean over categoricals
and steps.

"separate" (Hafner et al. 2023, arXiv 2301.04104, eq. 5; TorchRL's `categorical_kl_terms`):
after mixing `unimix` of the uniform into both distributions,

    L_dyn = mean(max(free_nats, Σ_c KL_c(sg(post) ‖ prior)))
    L_rep = mean(max(free_nats, Σ_c KL_c(post ‖ sg(prior))))

the free nats clamp the KL summed over the categoricals; the paper weighs them 1 and 0.1.
"""

from __future__ import annotations

import torch

_EPS = 1e-8


def kl_balanced(
    posterior_logits: torch.Tensor,
    prior_logits: torch.Tensor,
    alpha: float = 0.8,
    free_bits: float = 1.0,
) -> torch.Tensor:
    """The balanced KL loss (scalar); see the module docstring."""
    posterior = torch.softmax(posterior_logits, dim=-1).clamp(min=_EPS)
    prior = torch.softmax(prior_logits, dim=-1).clamp(min=_EPS)
    post_sg, prior_sg = posterior.detach(), prior.detach()
    trains_prior = (post_sg * (post_sg.log() - prior.log())).sum(-1)
    trains_posterior = (posterior * (posterior.log() - prior_sg.log())).sum(-1)
    return (
        alpha * trains_prior.clamp_min(free_bits).mean()
        + (1.0 - alpha) * trains_posterior.clamp_min(free_bits).mean()
    )


def _mixed(logits: torch.Tensor, unimix: float) -> torch.Tensor:
    probs = torch.softmax(logits, dim=-1)
    return (1 - unimix) * probs + unimix / logits.shape[-1] if unimix else probs


def kl_separate(
    posterior_logits: torch.Tensor,
    prior_logits: torch.Tensor,
    free_nats: float = 1.0,
    unimix: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(L_dyn, L_rep), scalars; see the module docstring."""
    posterior, prior = _mixed(posterior_logits, unimix), _mixed(prior_logits, unimix)
    post_log, prior_log = posterior.log(), prior.log()
    dynamics = (posterior.detach() * (post_log.detach() - prior_log)).sum((-1, -2))
    representation = (posterior * (post_log - prior_log.detach())).sum((-1, -2))
    if free_nats:
        dynamics, representation = (
            dynamics.clamp_min(free_nats),
            representation.clamp_min(free_nats),
        )
    return dynamics.mean(), representation.mean()
