"""The losses the service offers, by request name: one entry each.

Adding a loss: its module in `service/losses/`, an entry here, a message in the `loss` oneof of
the proto whose fields (and `PolicyLossOptions` fields, if it has `options`) are the entry's knobs,
an option class in each client. The wire layer reads the knobs generically; the runtime calls
`function` in the entry's `layout`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from service.knobs import (
    ANY,
    COUNT,
    FINITE,
    MODEL_GAMMA,
    NON_NEGATIVE,
    POSITIVE,
    UNIT_INTERVAL,
    Knob,
)
from service.losses._offpolicy import OffPolicyKind
from service.losses.a2c import a2c_loss
from service.losses.cql import cql_loss
from service.losses.crossq import crossq_loss
from service.losses.ddpg import ddpg_loss
from service.losses.discrete_cql import discrete_cql_loss
from service.losses.discrete_sac import discrete_sac_loss
from service.losses.dqn import dqn_loss
from service.losses.impala import impala_loss
from service.losses.iql import discrete_iql_loss, iql_loss
from service.losses.ppo import clip_epsilon_bounds, ppo_clip_loss, ppo_kl_loss, ppo_loss
from service.losses.redq import redq_loss
from service.losses.reinforce import reinforce_loss
from service.losses.sac import sac_loss
from service.losses.td3 import td3_bc_loss, td3_loss


@dataclass(frozen=True)
class LossKind:
    """One loss: its function, how it is called, and the request knobs it takes.

    layout "steps": `function(dist [N], action, [sample_log_prob [N]], advantage [N, 1],
    state_value [N, 1], value_target [N, 1], old_state_value=…, **options)` over every step,
    with the advantage from the request's estimator. layout "sequence": `function(dist [*B, T],
    action, sample_log_prob, state_value, next_state_value, reward, done, terminated, **options)`
    with the [*B, T, 1] layout (V-trace inside the loss). layout "transitions" (off-policy):
    `function(networks, transitions, **options)` over N replay transitions (see
    `service.losses._offpolicy`); `offpolicy` says what it needs from the model.
    """

    function: Callable
    layout: Literal["steps", "sequence", "transitions"]
    knobs: Mapping[str, Knob] = field(default_factory=dict)
    needs_sample_log_prob: bool = False  # the behaviour policy's log-probability
    needs_behaviour_distribution: bool = False  # the behaviour policy's parameters (KL)
    adaptive_beta: bool = False  # KL-PEN's β: per-model state, adapted on each update
    # Combines or cross-checks knobs after each was range-checked (raises ArgumentError).
    prepare: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    offpolicy: OffPolicyKind | None = None  # layout "transitions" only


# PolicyLossOptions, as each TorchRL-derived loss takes them.
_CRITIC = {"critic_coeff": NON_NEGATIVE, "loss_critic_type": ANY, "clip_value": POSITIVE}
_ENTROPY = {"entropy_bonus": ANY, "entropy_coeff": NON_NEGATIVE}
_PPO = {**_ENTROPY, **_CRITIC, "normalize_advantage": ANY}

LOSSES: dict[str, LossKind] = {
    "ppo_clip": LossKind(
        ppo_clip_loss,
        "steps",
        {**_PPO, "clip_epsilon": POSITIVE, "clip_epsilon_low": ANY, "clip_epsilon_high": ANY},
        needs_sample_log_prob=True,
        prepare=clip_epsilon_bounds,
    ),
    "ppo_kl": LossKind(
        ppo_kl_loss,
        "steps",
        {
            **_PPO,
            "dtarg": POSITIVE,
            "increment": POSITIVE,
            "decrement": POSITIVE,
            "beta": NON_NEGATIVE,
        },
        needs_sample_log_prob=True,
        needs_behaviour_distribution=True,
        adaptive_beta=True,
    ),
    "ppo": LossKind(ppo_loss, "steps", _PPO, needs_sample_log_prob=True),
    "a2c": LossKind(a2c_loss, "steps", {**_ENTROPY, **_CRITIC}),
    "reinforce": LossKind(
        reinforce_loss, "steps", {"loss_critic_type": ANY, "clip_value": POSITIVE}
    ),
    "impala": LossKind(
        impala_loss,
        "sequence",
        {
            "gamma": MODEL_GAMMA,
            "lmbda": UNIT_INTERVAL,
            "rho_thresh": POSITIVE,
            "c_thresh": POSITIVE,
            "rho_pg_thresh": POSITIVE,
            **_ENTROPY,
            "critic_coeff": NON_NEGATIVE,
        },
        needs_sample_log_prob=True,
    ),
}

# Off-policy losses: TorchRL's knob names and defaults (the functions' keyword defaults).
_TEMPERATURE = {
    "alpha_init": POSITIVE,
    "min_alpha": POSITIVE,
    "max_alpha": POSITIVE,
    "fixed_alpha": ANY,
    "target_entropy": FINITE,
    "num_qvalue_nets": COUNT,
    "delay_qvalue": ANY,
}
_TD = {"gamma": MODEL_GAMMA, "loss_function": ANY}
_CONTINUOUS = ("tanh_normal", "normal")
# TD3 and TD3+BC: the same knobs (TD3+BC adds its α) and the same needs of the model.
_TD3_KNOBS = {
    **_TD,
    "policy_noise": NON_NEGATIVE,
    "noise_clip": NON_NEGATIVE,
    "delay_actor": ANY,
    "delay_qvalue": ANY,
    "num_qvalue_nets": COUNT,
    "policy_update_delay": COUNT,
    "seed": ANY,
}
_TD3 = OffPolicyKind(
    qvalue_kind="state_action",
    actor=_CONTINUOUS,
    samples=True,
    delay_actor_default=True,
    delayed_policy=True,
)
LOSSES.update(
    {
        "dqn": LossKind(
            dqn_loss,
            "transitions",
            {**_TD, "delay_value": ANY, "double_dqn": ANY},
            offpolicy=OffPolicyKind(qvalue_kind="action_value", single_qvalue=True),
        ),
        "sac": LossKind(
            sac_loss,
            "transitions",
            {**_TD, **_TEMPERATURE, "seed": ANY},
            offpolicy=OffPolicyKind(
                qvalue_kind="state_action",
                actor=_CONTINUOUS,
                temperature=True,
                samples=True,
            ),
        ),
        "discrete_sac": LossKind(
            discrete_sac_loss,
            "transitions",
            {**_TD, **_TEMPERATURE, "target_entropy_weight": NON_NEGATIVE},
            offpolicy=OffPolicyKind(
                qvalue_kind="action_value", actor=("categorical",), temperature=True
            ),
        ),
        "ddpg": LossKind(
            ddpg_loss,
            "transitions",
            {**_TD, "delay_actor": ANY, "delay_value": ANY},
            offpolicy=OffPolicyKind(
                qvalue_kind="state_action",
                single_qvalue=True,
                actor=_CONTINUOUS,
                delay_actor_default=False,
            ),
        ),
        "td3": LossKind(td3_loss, "transitions", _TD3_KNOBS, offpolicy=_TD3),
        "td3_bc": LossKind(
            td3_bc_loss, "transitions", {**_TD3_KNOBS, "alpha": NON_NEGATIVE}, offpolicy=_TD3
        ),
        "iql": LossKind(
            iql_loss,
            "transitions",
            {
                **_TD,
                "temperature": NON_NEGATIVE,
                "expectile": UNIT_INTERVAL,
                "num_qvalue_nets": COUNT,
            },
            offpolicy=OffPolicyKind(
                qvalue_kind="state_action", actor=_CONTINUOUS, value_network=True
            ),
        ),
        "discrete_iql": LossKind(
            discrete_iql_loss,
            "transitions",
            {
                **_TD,
                "temperature": NON_NEGATIVE,
                "expectile": UNIT_INTERVAL,
                "num_qvalue_nets": COUNT,
            },
            offpolicy=OffPolicyKind(
                qvalue_kind="action_value", actor=("categorical",), value_network=True
            ),
        ),
        "cql": LossKind(
            cql_loss,
            "transitions",
            {
                **_TD,
                **_TEMPERATURE,
                "temperature": POSITIVE,
                "min_q_weight": NON_NEGATIVE,
                "deterministic_backup": ANY,
                "num_random": COUNT,
                "seed": ANY,
            },
            offpolicy=OffPolicyKind(
                qvalue_kind="state_action",
                actor=_CONTINUOUS,
                temperature=True,
                samples=True,
                ensemble_of_two=True,
            ),
        ),
        "redq": LossKind(
            redq_loss,
            "transitions",
            {**_TD, **_TEMPERATURE, "sub_sample_len": COUNT, "seed": ANY},
            offpolicy=OffPolicyKind(
                qvalue_kind="state_action", actor=_CONTINUOUS, temperature=True, samples=True
            ),
        ),
        "crossq": LossKind(
            crossq_loss,
            "transitions",
            {
                **_TD,
                **{k: v for k, v in _TEMPERATURE.items() if k != "delay_qvalue"},
                "seed": ANY,
            },
            offpolicy=OffPolicyKind(
                qvalue_kind="state_action",
                actor=_CONTINUOUS,
                temperature=True,
                samples=True,
                uses_targets=False,
            ),
        ),
        "discrete_cql": LossKind(
            discrete_cql_loss,
            "transitions",
            {**_TD, "delay_value": ANY},
            offpolicy=OffPolicyKind(qvalue_kind="action_value", single_qvalue=True),
        ),
    }
)
#: The loss a request that names none gets.
DEFAULT_LOSS = "ppo_clip"
