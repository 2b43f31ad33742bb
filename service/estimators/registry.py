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
    #: TorchRL's names of it: its `ValueEstimators` member, then its estimator class when that
    #: differs (accepted wherever a request names an estimator, see `estimator_named`).
    torchrl_names: tuple[str, ...] = ()


ESTIMATORS: dict[str, EstimatorKind] = {
    "td0": EstimatorKind(
        td0, {"gamma": COEFFICIENT, "average_rewards": ANY}, torchrl_names=("TD0", "TD0Estimator")
    ),
    "td1": EstimatorKind(
        td1, {"gamma": COEFFICIENT, "average_rewards": ANY}, torchrl_names=("TD1", "TD1Estimator")
    ),
    "td_lambda": EstimatorKind(
        td_lambda,
        {"gamma": COEFFICIENT, "lmbda": COEFFICIENT, "average_rewards": ANY},
        torchrl_names=("TDLambda", "TDLambdaEstimator"),
    ),
    "gae": EstimatorKind(
        gae,
        {"gamma": COEFFICIENT, "lmbda": COEFFICIENT, "average_gae": ANY},
        torchrl_names=("GAE",),
    ),
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
        torchrl_names=("VTrace",),
    ),
}
#: The estimator a request that names none gets (TorchRL's losses default to GAE).
DEFAULT_ESTIMATOR = "gae"
#: Every spelling `estimator_named` documents: the request names, then TorchRL's.
ESTIMATOR_NAMES: tuple[str, ...] = (
    *ESTIMATORS,
    *(name for kind in ESTIMATORS.values() for name in kind.torchrl_names),
)


def _name_key(name: str) -> str:
    return name.lower().replace("_", "").replace("-", "")


_BY_KEY: dict[str, str] = {
    _name_key(alias): request_name
    for request_name, kind in ESTIMATORS.items()
    for alias in (request_name, *kind.torchrl_names)
}


def estimator_named(name: str) -> str | None:
    """The request name ("td_lambda") of the estimator `name` stands for: a request name, or
    TorchRL's `ValueEstimators` member ("TDLambda") or class ("TDLambdaEstimator"), with case,
    "_" and "-" ignored; None when it names none (TorchRL's "MAGAE" among them)."""
    return _BY_KEY.get(_name_key(name))
