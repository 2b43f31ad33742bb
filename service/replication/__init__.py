"""Replication: a replica (`advantage-service serve --follow LEARNER`) following its learner.

`follower.Follower` subscribes to the learner's WatchModels, copies each new version with
GetParameters, installs it atomically (`service.runtime.replica.install`) and resubscribes with
bounded exponential backoff when the learner goes away. The rules a replica's handlers apply
(writes refused, reads waiting for a version) are in `service.runtime.replica`.
"""

from service.replication.follower import Follower

__all__ = ["Follower"]
