"""The DreamerV3 learner on the server: imagination, the world model on replay sequences, the
actor's and critic's losses, and the grouped transactional update."""

from service.runtime.dreamer.imagination import Imagined, imagine
from service.runtime.dreamer.learner import (
    DREAMER_LOSSES,
    DreamerInputs,
    DreamerResult,
    compute_dreamer_loss,
)
from service.runtime.dreamer.replay import Replay, observe

__all__ = [
    "DREAMER_LOSSES",
    "DreamerInputs",
    "DreamerResult",
    "Imagined",
    "Replay",
    "compute_dreamer_loss",
    "imagine",
    "observe",
]
