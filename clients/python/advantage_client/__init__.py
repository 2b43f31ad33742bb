"""Light Python client for advantage-service.

Hard dependencies: grpcio, protobuf, numpy. torch and tensordict (the ``[torch]`` extra) are
imported only when a torch tensor or a TensorDict is passed in.

    from advantage_client import GAE, AdvantageClient, ClipPPO

    with AdvantageClient("localhost:50051", timeout=10) as client:
        result = client.compute_advantage(
            reward=r, done=d, observation=o, next_observation=o2, estimator=GAE(lmbda=0.9)
        )
        result.advantage, result.value_target  # numpy [*B, T]
        step = client.compute_loss(
            reward=r, done=d, observation=o, next_observation=o2, action=a, sample_log_prob=lp,
            loss=ClipPPO(clip_epsilon=0.1), estimator=GAE(gamma=0.99), apply_update=True,
        )
        version, params = client.get_parameters(prefixes="actor_network.")

A list of servers (``["10.0.0.7:50051", "10.0.0.8:50051"]``) or a ``dns:///`` name that resolves
to several is balanced round-robin, with retries of UNAVAILABLE (`DEFAULT_SERVICE_CONFIG`).
"""

from advantage_client._core import DEFAULT_SERVICE_CONFIG
from advantage_client._knobs import ESTIMATORS, KNOBS, LOSS_KNOBS, LOSSES
from advantage_client._request import compact_observations
from advantage_client.aio import AsyncAdvantageClient
from advantage_client.client import AdvantageClient
from advantage_client.dreamer import (
    DreamerImagination,
    DreamerResult,
    DreamerV3,
    DreamerV3Actor,
    DreamerV3Model,
    DreamerV3Value,
)
from advantage_client.errors import (
    AdvantageServiceError,
    CancelledError,
    DeadlineExceededError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    ResourceExhaustedError,
    UnauthenticatedError,
    UnavailableError,
)
from advantage_client.offpolicy import (
    CQL,
    DDPG,
    DQN,
    IQL,
    REDQ,
    SAC,
    TD3,
    TD3BC,
    CrossQ,
    DiscreteCQL,
    DiscreteIQL,
    DiscreteSAC,
    OffPolicyLoss,
    OffPolicyResult,
)
from advantage_client.options import (
    A2C,
    GAE,
    KLPENPPO,
    PPO,
    TD0,
    TD1,
    ClipPPO,
    EstimatorOptions,
    Impala,
    LossOptions,
    Reinforce,
    TDLambda,
    VTrace,
    estimator_from,
    loss_from,
)
from advantage_client.types import (
    ActionSpec,
    AdvantageResult,
    InputSpec,
    LossResult,
    ModelInfo,
    Parameters,
    Timing,
)

__version__ = "0.1.0"

__all__ = [
    "A2C",
    "CQL",
    "DDPG",
    "DEFAULT_SERVICE_CONFIG",
    "DQN",
    "ESTIMATORS",
    "GAE",
    "IQL",
    "KLPENPPO",
    "KNOBS",
    "LOSSES",
    "LOSS_KNOBS",
    "PPO",
    "REDQ",
    "SAC",
    "TD0",
    "TD1",
    "TD3",
    "TD3BC",
    "ActionSpec",
    "AdvantageClient",
    "AdvantageResult",
    "AdvantageServiceError",
    "AsyncAdvantageClient",
    "CancelledError",
    "ClipPPO",
    "CrossQ",
    "DeadlineExceededError",
    "DiscreteCQL",
    "DiscreteIQL",
    "DiscreteSAC",
    "DreamerImagination",
    "DreamerResult",
    "DreamerV3",
    "DreamerV3Actor",
    "DreamerV3Model",
    "DreamerV3Value",
    "EstimatorOptions",
    "FailedPreconditionError",
    "Impala",
    "InputSpec",
    "InvalidArgumentError",
    "LossOptions",
    "LossResult",
    "ModelInfo",
    "NotFoundError",
    "OffPolicyLoss",
    "OffPolicyResult",
    "Parameters",
    "PermissionDeniedError",
    "Reinforce",
    "ResourceExhaustedError",
    "TDLambda",
    "Timing",
    "UnauthenticatedError",
    "UnavailableError",
    "VTrace",
    "__version__",
    "compact_observations",
    "estimator_from",
    "loss_from",
]
