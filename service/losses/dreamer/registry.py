"""The DreamerV3 losses a ComputeLoss request can name, and the knobs each message carries.

The wire layer reads each message's knobs generically (`service.wire.options.read_knobs`), by
these names and ranges; unset knobs take the maths core's defaults (TorchRL 0.14.1's), γ and λ
the model manifest's `defaults`.
"""

from __future__ import annotations

import math

from service.knobs import ANY, COEFFICIENT, MODEL_GAMMA, NON_NEGATIVE, POSITIVE, UNIT_INTERVAL, Knob

HALF_OPEN_UNIT = Knob("a value in [0, 1)", lambda v: 0.0 <= v < 1.0)
POSITIVE_UNIT = Knob("a value in (0, 1]", lambda v: 0.0 < v <= 1.0)
WHOLE_POSITIVE = Knob("an integer ≥ 1", lambda v: math.isfinite(v) and v >= 1 and v == int(v))

IMAGINATION = {
    "imagination_horizon": WHOLE_POSITIVE,
    "gamma": MODEL_GAMMA,
    "lmbda": COEFFICIENT,
    "discount_loss": ANY,
}
ACTOR = {
    **IMAGINATION,
    "entropy_bonus": NON_NEGATIVE,
    "use_reinforce": ANY,
    "return_normalization": ANY,
    "return_normalization_rate": UNIT_INTERVAL,
    "return_normalization_min_scale": POSITIVE,
    "return_low_quantile": UNIT_INTERVAL,
    "return_high_quantile": UNIT_INTERVAL,
}
VALUE = {
    **IMAGINATION,
    "value_loss": ANY,
    "slow_critic_regularization": NON_NEGATIVE,
    "slow_critic_rate": UNIT_INTERVAL,
}
MODEL = {
    "lambda_kl": NON_NEGATIVE,
    "lambda_reco": NON_NEGATIVE,
    "lambda_reward": NON_NEGATIVE,
    "lambda_continue": NON_NEGATIVE,
    "kl_mode": ANY,
    "kl_alpha": UNIT_INTERVAL,
    "free_bits": NON_NEGATIVE,
    "lambda_dynamic": NON_NEGATIVE,
    "lambda_representation": NON_NEGATIVE,
    "unimix": HALF_OPEN_UNIT,
    "reco_loss": ANY,
    "reco_symlog": ANY,
    "continue_target_scale": POSITIVE_UNIT,
}
#: The value of each enum knob left at its UNSPECIFIED zero.
ENUM_DEFAULTS = {"value_loss": "symlog_mse", "kl_mode": "balanced", "reco_loss": "l2"}
#: Request loss name → (needs starting latents or an imagined rollout, needs a replay batch).
DREAMER_LOSSES = {
    "dreamer_v3_actor": (True, False),
    "dreamer_v3_value": (True, False),
    "dreamer_v3_model": (False, True),
    "dreamer_v3": (False, True),
}
