"""Light Python client for advantage-service.

Hard dependencies: grpcio, protobuf, numpy. torch and tensordict (the ``[torch]`` extra) are
imported only when a torch tensor or a TensorDict is passed in.

    from advantage_client import AdvantageClient

    with AdvantageClient("localhost:50051", timeout=10) as client:
        result = client.compute_advantage(reward=r, done=d, observation=o, next_observation=o2)
        result.advantage, result.value_target  # numpy [*B, T]
        step = client.compute_loss(reward=r, done=d, observation=o, next_observation=o2,
                                   action=a, sample_log_prob=lp, apply_update=True)
        version, params = client.get_parameters(prefixes="actor_network.")
"""

from advantage_client._loss import LOSS_KNOBS, LOSSES
from advantage_client._request import ESTIMATORS, KNOBS, compact_observations
from advantage_client.aio import AsyncAdvantageClient
from advantage_client.client import AdvantageClient
from advantage_client.errors import (
    AdvantageServiceError,
    DeadlineExceededError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    ResourceExhaustedError,
    UnauthenticatedError,
    UnavailableError,
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
    "ESTIMATORS",
    "KNOBS",
    "LOSSES",
    "LOSS_KNOBS",
    "ActionSpec",
    "AdvantageClient",
    "AdvantageResult",
    "AdvantageServiceError",
    "AsyncAdvantageClient",
    "DeadlineExceededError",
    "FailedPreconditionError",
    "InputSpec",
    "InvalidArgumentError",
    "LossResult",
    "ModelInfo",
    "NotFoundError",
    "Parameters",
    "ResourceExhaustedError",
    "Timing",
    "UnauthenticatedError",
    "UnavailableError",
    "__version__",
    "compact_observations",
]
