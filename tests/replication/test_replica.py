"""Learner and replicas on real in-process servers: WatchModels, following, writes refused,
read-your-writes, readiness, lag metrics, losing and finding the learner again."""

from __future__ import annotations

import dataclasses
import queue
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
import torch

from service.models.demo import demo_manifest, demo_model
from service.models.manifest import Defaults
from service.pb.advantage.v1 import advantage_pb2 as pb
from service.settings import Settings
from tests.support.replication import (
    NOT_SERVING,
    SERVING,
    health,
    metric,
    model_version,
    parameter_stream,
    perturbed,
    same_parameters,
    wait_until,
)
from tests.support.servers import RunningServer, running_server
from tests.support.tls_certs import make_certificates
from tests.support.wire import full_trajectory, parameters, random_batch, rpc_error, stub

ROOT = Path(__file__).resolve().parents[2]


def advantage_request(seed: int = 0, **fields) -> pb.ComputeAdvantageRequest:
    return pb.ComputeAdvantageRequest(
        trajectory=full_trajectory(random_batch((2,), steps=8, seed=seed)), **fields
    )


def loss_request(seed: int = 0, **fields) -> pb.ComputeLossRequest:
    return pb.ComputeLossRequest(
        trajectory=full_trajectory(random_batch((2,), steps=8, seed=seed)), **fields
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture()
def pair() -> Iterator[tuple[RunningServer, RunningServer]]:
    """A learner and one replica of it (REST on both), the replica caught up."""
    with (
        running_server(rest=True) as learner,
        running_server(Settings(follow=learner.target), rest=True) as replica,
    ):
        wait_until(lambda: health(replica.target) == SERVING, "the replica's first copy")
        yield learner, replica


class Watcher:
    """Reads a WatchModels stream in a thread into a queue."""

    def __init__(self, target: str, **request) -> None:
        self.channel = grpc.insecure_channel(target)
        self.call = stub_of(self.channel).WatchModels(pb.WatchModelsRequest(**request))
        self.messages: queue.Queue[tuple[str, int] | BaseException] = queue.Queue()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            for message in self.call:
                self.messages.put((message.model_name, message.parameter_version))
        except grpc.RpcError as error:
            self.messages.put(error)
        self.messages.put(StopIteration())

    def next(self) -> tuple[str, int] | BaseException:
        return self.messages.get(timeout=60)

    def close(self) -> None:
        self.call.cancel()
        self.thread.join(30)
        self.channel.close()


def stub_of(channel: grpc.Channel):
    from service.pb.advantage.v1 import advantage_pb2_grpc as pb_grpc

    return pb_grpc.AdvantageServiceStub(channel)


# --- WatchModels on a learner ----------------------------------------------------------------


def test_watch_models_sends_current_versions_then_each_commit() -> None:
    with running_server() as learner:
        api = stub(learner.target)
        watcher = Watcher(learner.target)
        try:
            assert watcher.next() == ("demo", 0)
            _, tensors = parameters(api)
            api.SetParameters(iter(parameter_stream(perturbed(tensors, 1))), timeout=30)
            assert watcher.next() == ("demo", 1)
            reply = api.ComputeLoss(loss_request(apply_update=True), timeout=60)
            assert reply.new_parameter_version == 2
            assert watcher.next() == ("demo", 2)
            api.ComputeLoss(loss_request(), timeout=60)  # no update: no message
            api.SetParameters(iter(parameter_stream(perturbed(tensors, 2))), timeout=30)
            assert watcher.next() == ("demo", 3)
        finally:
            watcher.close()


def test_watch_models_names_models_and_refuses_unknown_ones() -> None:
    with running_server() as learner:
        named = Watcher(learner.target, model_names=["demo"])
        try:
            assert named.next() == ("demo", 0)
        finally:
            named.close()
        unknown = Watcher(learner.target, model_names=["nope"])
        try:
            error = unknown.next()
            assert isinstance(error, grpc.RpcError)
            assert error.code() == grpc.StatusCode.NOT_FOUND and "nope" in error.details()
        finally:
            unknown.close()


def test_stopping_ends_watch_streams_without_waiting_for_the_grace_period() -> None:
    server = RunningServer(Settings(), None)
    watcher = Watcher(server.target)
    try:
        assert watcher.next() == ("demo", 0)
        stopped = threading.Thread(target=server.stop, kwargs={"grace": 120.0})
        stopped.start()
        stopped.join(60)  # far below the 120 s grace: the stream did not hold the stop
        assert not stopped.is_alive()
        assert isinstance(watcher.next(), StopIteration | grpc.RpcError)
    finally:
        watcher.close()


# --- a replica following its learner -----------------------------------------------------------


def test_replica_serves_the_learners_versions_with_the_same_numbers(pair) -> None:
    learner, replica = pair
    lapi, rapi = stub(learner.target), stub(replica.target)
    assert same_parameters(parameters(rapi), parameters(lapi))
    for seed in (1, 2):
        _, tensors = parameters(lapi)
        new = lapi.SetParameters(iter(parameter_stream(perturbed(tensors, seed))), timeout=30)
        version = new.parameter_version
        wait_until(lambda v=version: model_version(rapi) == v, f"version {version} on the replica")
        got_version, got = parameters(rapi)
        assert got_version == version
        assert all(torch.equal(got[k], v) for k, v in parameters(lapi)[1].items())
        mine, theirs = (api.ComputeAdvantage(advantage_request(seed)) for api in (rapi, lapi))
        assert mine.parameter_version == theirs.parameter_version == version
        assert mine.advantage == theirs.advantage and mine.state_value == theirs.state_value
        mine_loss, their_loss = (api.ComputeLoss(loss_request(seed)) for api in (rapi, lapi))
        assert mine_loss.parameter_version == version and not mine_loss.updated
        assert mine_loss.loss == their_loss.loss and mine_loss.metrics == their_loss.metrics
    assert [m.name for m in rapi.ListModels(pb.ListModelsRequest()).models] == ["demo"]


def test_a_replica_refuses_writes_naming_the_learner(pair) -> None:
    learner, replica = pair
    rapi = stub(replica.target)
    expected = f"this server is a replica of {learner.target}; send"
    error = rpc_error(lambda r, timeout: rapi.SetParameters(iter(r), timeout=timeout), [])
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error.details() == f"{expected} SetParameters to the learner"
    error = rpc_error(rapi.ComputeLoss, loss_request(apply_update=True))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error.details() == f"{expected} apply_update to the learner"
    body = httpx.get(f"{replica.url}/debug/sample", timeout=30).json()
    rest = httpx.post(f"{replica.url}/v1/loss", json={**body, "apply_update": True}, timeout=30)
    assert rest.status_code == 412, rest.text
    assert rest.json() == {
        "code": "FAILED_PRECONDITION",
        "message": f"{expected} apply_update to the learner",
    }
    assert parameters(rapi)[0] == 0 and parameters(stub(learner.target))[0] == 0  # nothing changed


def test_min_parameter_version_on_the_learner_is_refused_at_once(pair) -> None:
    learner, _ = pair
    lapi = stub(learner.target)
    assert lapi.ComputeAdvantage(advantage_request(min_parameter_version=0)).parameter_version == 0
    for call, request in (
        (lapi.ComputeAdvantage, advantage_request(min_parameter_version=1)),
        (lapi.ComputeLoss, loss_request(min_parameter_version=1, apply_update=True)),
        (lambda r, timeout: list(lapi.GetParameters(r, timeout=timeout)),
         pb.GetParametersRequest(min_parameter_version=1)),
    ):  # fmt: skip
        error = rpc_error(call, request)
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "is at version 0, not yet at 1" in error.details()
    assert model_version(lapi) == 0  # the update was not applied


def test_read_your_writes_a_replica_waits_for_the_version(pair) -> None:
    learner, replica = pair
    lapi, rapi = stub(learner.target), stub(replica.target)
    _, tensors = parameters(lapi)
    # Asked before the learner has it: the replica waits, then answers with the new version.
    waiting = [
        rapi.ComputeAdvantage.future(advantage_request(min_parameter_version=1), timeout=60),
        rapi.ComputeLoss.future(loss_request(min_parameter_version=1), timeout=60),
    ]
    lapi.SetParameters(iter(parameter_stream(perturbed(tensors, 3))), timeout=30)
    assert [future.result().parameter_version for future in waiting] == [1, 1]
    pulled = list(rapi.GetParameters(pb.GetParametersRequest(min_parameter_version=1)))
    assert {chunk.parameter_version for chunk in pulled} == {1}
    # A version nobody has: UNAVAILABLE (retryable) naming what the replica holds.
    error = rpc_error(
        lambda r, timeout: rapi.ComputeAdvantage(r, timeout=2),
        advantage_request(min_parameter_version=9),
    )
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert f"this replica of {learner.target} holds version 1 of model 'demo', not yet 9" in (
        error.details()
    )
    # REST: the same field and the same rule.
    body = httpx.get(f"{replica.url}/debug/sample", timeout=30).json()
    ok = httpx.post(f"{replica.url}/v1/advantage", json={**body, "min_parameter_version": 1})
    assert ok.status_code == 200 and ok.json()["parameter_version"] == 1
    early = httpx.post(
        f"{learner.url}/v1/advantage", json={**body, "min_parameter_version": 2}, timeout=30
    )
    assert early.status_code == 412 and "not yet at 2" in early.json()["message"]


def test_replica_metrics_report_its_lag(pair) -> None:
    learner, replica = pair
    text = httpx.get(f"{replica.url}/metrics", timeout=30).text
    assert metric(text, f'advantage_replica_connected{{learner="{learner.target}"}}') == 1
    assert metric(text, 'advantage_replica_versions_behind{model="demo"}') == 0
    # 0 is the metric's "subscribed and up to date" state, not a measured duration.
    assert metric(text, 'advantage_replica_seconds_since_sync{model="demo"}') == 0
    assert metric(text, 'advantage_replica_syncs_total{model="demo"}') == 1
    assert metric(text, 'advantage_model_parameter_version{model="demo"}') == 0
    assert "advantage_replica_" not in httpx.get(f"{learner.url}/metrics", timeout=30).text
    ready = httpx.get(f"{replica.url}/readyz", timeout=30)
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "models": ["demo"], "replica_of": learner.target}


# --- readiness, losing the learner and finding it again -----------------------------------------


def test_replica_is_not_serving_until_it_holds_the_learners_version() -> None:
    port = free_port()  # nobody listens there yet
    with running_server(Settings(follow=f"127.0.0.1:{port}"), rest=True) as replica:
        follower = replica.server.follower
        wait_until(lambda: follower.attempts >= 2, "two attempts to reach the learner")
        assert health(replica.target) == NOT_SERVING
        ready = httpx.get(f"{replica.url}/readyz", timeout=30)
        assert ready.status_code == 503 and ready.json()["status"] == "syncing"
        rapi = stub(replica.target)
        error = rpc_error(rapi.ComputeAdvantage, advantage_request())
        assert error.code() == grpc.StatusCode.UNAVAILABLE
        assert "has not copied model 'demo'" in error.details()
        assert model_version(rapi) == 0  # metadata answers
        text = httpx.get(f"{replica.url}/metrics", timeout=30).text
        assert metric(text, f'advantage_replica_connected{{learner="127.0.0.1:{port}"}}') == 0
        # Not the "up to date" state (0): the replica has never synced. No duration is bounded.
        assert metric(text, 'advantage_replica_seconds_since_sync{model="demo"}') != 0
        watcher = Watcher(replica.target)  # a replica announces only copies it holds
        board = replica.server.runtime.versions
        (watch,) = wait_until(lambda: list(board._watches), "the watch to open")
        assert watch._pending == {} and watch._sent == {}  # not its own, uncopied version 0
        try:
            with running_server(port=port) as learner:
                lapi = stub(learner.target)
                _, tensors = parameters(lapi)
                lapi.SetParameters(iter(parameter_stream(perturbed(tensors, 4))), timeout=30)
                wait_until(lambda: health(replica.target) == SERVING, "the replica's first copy")
                # SERVING only with a copy of the learner's: version 0 when the replica got in
                # before the SetParameters above committed, else 1; then 1 in any case.
                assert model_version(rapi) in (0, 1)
                wait_until(lambda: model_version(rapi) == 1, "the learner's current version")
                assert same_parameters(parameters(rapi), parameters(lapi))
                first = watcher.next()
                assert first in (("demo", 0), ("demo", 1))  # the learner's versions only
                if first == ("demo", 0):
                    assert watcher.next() == ("demo", 1)
        finally:
            watcher.close()


def test_replica_keeps_serving_when_the_learner_goes_away_then_follows_it_again() -> None:
    port = free_port()
    learner = RunningServer(Settings(), None, port=port)
    try:
        with running_server(Settings(follow=learner.target), rest=True) as replica:
            lapi, rapi = stub(learner.target), stub(replica.target)
            _, tensors = parameters(lapi)
            lapi.SetParameters(iter(parameter_stream(perturbed(tensors, 5))), timeout=30)
            wait_until(lambda: model_version(rapi) == 1, "version 1 on the replica")
            before = rapi.ComputeAdvantage(advantage_request())
            learner.stop()
            state = replica.server.runtime.replica
            wait_until(lambda: not state.connected, "the replica to notice")
            after = rapi.ComputeAdvantage(advantage_request())  # still serving version 1
            assert after.parameter_version == 1 and after.advantage == before.advantage
            assert health(replica.target) == SERVING
            text = httpx.get(f"{replica.url}/metrics", timeout=30).text
            assert metric(text, f'advantage_replica_connected{{learner="{learner.target}"}}') == 0
            wait_until(
                lambda: state.seconds_since_sync("demo") > 0.1, "the lag to grow", interval=0.05
            )
            # A new learner on the same address (its state starts again at version 0): the
            # replica resubscribes and serves the learner's parameters, as the learner does.
            learner = RunningServer(Settings(), None, port=port)
            lapi = stub(learner.target)
            wait_until(lambda: state.connected, "the replica to resubscribe")
            wait_until(lambda: model_version(rapi) == 0, "the new learner's version")
            assert same_parameters(parameters(rapi), parameters(lapi))
            _, tensors = parameters(lapi)
            lapi.SetParameters(iter(parameter_stream(perturbed(tensors, 6))), timeout=30)
            wait_until(lambda: model_version(rapi) == 1, "version 1 of the new learner")
            assert same_parameters(parameters(rapi), parameters(lapi))
            assert replica.server.follower.subscriptions == 2
    finally:
        learner.stop()


def test_replica_of_other_models_stops_with_one_line() -> None:
    other = demo_model(torch.device("cpu"))
    other.manifest = dataclasses.replace(demo_manifest(), defaults=Defaults(gamma=0.5, lmbda=0.9))
    with running_server() as learner:
        replica = RunningServer(Settings(follow=learner.target), {"demo": other})
        try:
            wait_until(lambda: replica.server.fatal, "the replica to give up")
            assert replica.server.fatal == (
                f"--follow {learner.target}: model 'demo': defaults is {{gamma: 0.5, lmbda: 0.9}}"
                " here and {gamma: 0.99, lmbda: 0.95} on the learner; start the replica with the "
                "learner's --model-repository"
            )
            wait_until(lambda: replica.server.state == "draining", "the replica to stop")
        finally:
            replica.stop()


def test_command_line_replica_of_other_models_exits_with_one_line(tmp_path: Path) -> None:
    export = [sys.executable, "-m", "service.cli", "export-model", str(tmp_path / "other")]
    subprocess.run([*export, "--name", "other", "--format", "torchscript"], check=True, cwd=ROOT)
    with running_server() as learner:
        done = subprocess.run(
            [sys.executable, "-m", "service.cli", "serve", "--host", "127.0.0.1", "--port", "0",
             "--rest-port", "0", "--follow", learner.target, "--model-repository", str(tmp_path)],
            capture_output=True, text=True, timeout=120, cwd=ROOT,
        )  # fmt: skip
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last == (
        f"advantage-service: --follow {learner.target}: the learner holds models ['demo'], this "
        "replica ['other']; start the replica with the learner's --model-repository"
    )


def test_replica_follows_a_learner_with_tls_and_tokens(tmp_path: Path) -> None:
    certs = make_certificates(tmp_path)
    tokens = {"auth_token": "read-s3cret", "admin_token": "admin-s3cret"}
    tls = {"tls_cert": certs.server_cert, "tls_key": certs.server_key}
    with running_server(Settings(**tls, **tokens)) as learner:
        follow = {"follow": f"localhost:{learner.port}", "follow_tls_ca": certs.ca}
        with running_server(Settings(**follow, auth_token="read-s3cret")) as replica:
            wait_until(lambda: replica.server.runtime.replica.ready, "the replica's first copy")
            assert replica.server.follower.subscriptions == 1
        with running_server(Settings(**follow)) as tokenless:
            follower = tokenless.server.follower
            wait_until(lambda: follower.attempts >= 2, "two attempts")
            assert follower.subscriptions == 0 and not tokenless.server.runtime.replica.ready


def test_follow_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="follow_tls_ca: only for a replica"):
        Settings(follow_tls_ca=ROOT / "README.md")
    with pytest.raises(ValueError, match="one gRPC address of the learner"):
        Settings(follow="10.0.0.1:50051,10.0.0.2:50051")
    assert Settings(follow="").follow is None
