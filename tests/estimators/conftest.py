"""Fixtures for the estimator tests."""

from __future__ import annotations

import pytest

from tests.support.estimators import BACKENDS


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Every test taking ``backend`` runs on the numba kernel and on the torch path."""
    return request.param
