"""Quickstart: advantages for a generated trajectory from a running advantage-service."""

import os

import numpy as np
from advantage_client import GAE, AdvantageClient

rng = np.random.default_rng(0)
B, T = 2, 6  # two trajectory segments of six steps, CartPole-sized observations
observation = rng.normal(size=(B, T + 1, 4)).astype(np.float32)  # one extra: the final next obs
done = np.zeros((B, T), dtype=bool)
done[0, 3] = True  # the first segment's episode terminates at step 3

with AdvantageClient(os.environ.get("ADVANTAGE_TARGET", "localhost:50051"), timeout=10) as client:
    result = client.compute_advantage(
        reward=np.ones((B, T), dtype=np.float32),
        done=done,
        observation=observation[:, :-1],
        next_observation=observation[:, 1:],
        estimator=GAE(gamma=0.99, lmbda=0.95),
    )
print("model", result.model_name, "version", result.parameter_version)
print("advantage\n", result.advantage.round(3))
print("value_target\n", result.value_target.round(3))
