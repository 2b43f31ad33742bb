"""Light means light: importing the client, and numpy-only calls, never import torch."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

# The repository root, so the subprocess imports tests.support as the tests do.
ROOT = str(Path(__file__).resolve().parents[3])


def _run(code: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_import_does_not_import_torch() -> None:
    out = _run(
        """
        import sys
        import advantage_client
        from advantage_client import AdvantageClient, AsyncAdvantageClient, compact_observations
        heavy = sorted(m for m in ("torch", "tensordict", "torchrl") if m in sys.modules)
        print(heavy, len(advantage_client.__all__))
        """
    )
    assert out.startswith("[] ")


def test_numpy_only_calls_do_not_import_torch(grpc_target: str) -> None:
    out = _run(
        """
        import sys
        sys.path.insert(0, sys.argv[2])
        import numpy as np
        from tests.support.client_data import make_batch
        from advantage_client import (
            AdvantageClient, FailedPreconditionError, compact_observations,
        )

        batch = make_batch()
        compact_observations(
            batch.observation, batch.next_observation, batch.done, batch.terminated
        )
        with AdvantageClient(sys.argv[1], timeout=60) as client:
            assert client.list_models()[0].name == "demo"
            for form in ("full", "compact"):
                result = client.compute_advantage(form=form, **batch.arrays())
                assert isinstance(result.advantage, np.ndarray)
            client.compute_advantage(estimator="vtrace", **batch.arrays(with_vtrace=True))
            loss = client.compute_loss(**batch.arrays(with_vtrace=True))
            assert isinstance(loss.loss, float) and "loss_objective" in loss.metrics
            version, params = client.get_parameters(max_chunk_bytes=256)
            assert all(isinstance(v, np.ndarray) for v in params.values())
            try:  # a stale compare-and-set: streamed and refused, nothing applied
                client.set_parameters(params, expected_version=version + 99)
            except FailedPreconditionError:
                pass
            else:
                raise AssertionError("expected FailedPreconditionError")
        print("torch" in sys.modules, "tensordict" in sys.modules)
        """,
        grpc_target,
        ROOT,
    )
    assert out.strip() == "False False"


def test_package_metadata_keeps_torch_optional() -> None:
    from importlib.metadata import requires

    hard = [r for r in requires("advantage-client") or [] if "extra ==" not in r]
    names = sorted(r.split(">")[0].split("<")[0].split("=")[0].strip().lower() for r in hard)
    assert names == ["grpcio", "numpy", "protobuf"]
    extra = [r for r in requires("advantage-client") or [] if 'extra == "torch"' in r]
    assert any(r.startswith("torch") for r in extra)
    assert any(r.startswith("tensordict") for r in extra)
