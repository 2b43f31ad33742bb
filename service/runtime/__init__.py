"""The work behind the RPCs, on decoded tensors: networks, estimators, losses, parameters.

Nothing here knows protobuf or a transport; every function runs in a worker thread, never on the
event loop, except the version board (`versions.py`: WatchModels and read-your-writes waits),
which lives on the loop and hears of commits from the threads. Domain objects (`Trajectory`,
`EstimatorSpec`, `LossInputs`, …) are defined here and built by `service.wire`.
"""

from service.runtime.context import Runtime

__all__ = ["Runtime"]
