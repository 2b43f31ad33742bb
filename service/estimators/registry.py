"""The estimators the service offers, by request name: one entry each.

Adding an estimator: its module in `service/estimators/`, an entry here, a message in the
`estimator` oneof of the proto whose fields are the entry's knobs, an option class in each client.
The wire layer reads the knobs generically; the runtime calls `function` with TorchRL's argument
names.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from service.estimators.gae import gae
from service.estimators.td import td0, td1, td_lambda
from service.estimators.vtrace import vtrace
from service.knobs import ANY, COEFFICIENT, POSITIVE, UNIT_INTERVAL, Knob


@dataclass(frozen=True)
class EstimatorKind:
    """One estimator: the function, its request knobs, and whether it scores log-probabilities.

    `function(**tensors, **options, time_dim=-2)` returns (advantage, value_target).
    """

    function: Callable
    knobs: Mapping[str, Knob] = field(default_factory=dict)
    needs_log_probs: bool = False  # V-trace: the current and the behaviour log-probabilities


ESTIMATORS: dict[str, EstimatorKind] = {
    "td0": EstimatorKind(td0, {"gamma": COEFFICIENT, "average_rewards": ANY}),
    "td1": EstimatorKind(td1, {"gamma": COEFFICIENT, "average_rewards": ANY}),
    "td_lambda": EstimatorKind(
        td_lambda, {"gamma": COEFFICIENT, "lmbda": COEFFICIENT, "average_rewards": ANY}
    ),
    "gae": EstimatorKind(gae, {"gamma": COEFFICIENT, "lmbda": COEFFICIENT, "average_gae": ANY}),
    "vtrace": EstimatorKind(
        vtrace,
        {
            "gamma": COEFFICIENT,
            "rho_thresh": POSITIVE,
            "c_thresh": POSITIVE,
            "lmbda": UNIT_INTERVAL,
            "rho_pg_thresh": POSITIVE,
            "average_adv": ANY,
        },
        needs_log_probs=True,
    ),
}
#: The estimator a request that names none gets (TorchRL's losses default to GAE).
DEFAULT_ESTIMATOR = "gae"
