"""The C++ client (clients/cpp) built with CMake against Debian's gRPC, run against a real server.

One out-of-tree build per session (into a temporary directory); the example CLIs `compute_gae`
and `every_rpc` and the golden-vector runner `golden_cases` are then run against real servers.
Missing build tools or packages FAIL the tests (CI must run them) with the apt-get line that
installs them.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from advantage_client._request import prepare as prepare_request

from service.pb.advantage.v1 import advantage_pb2 as pb
from service.settings import Settings
from service.wire.codec import decode_tensor
from tests.support.golden import TESTDATA, compare_answer, load_cases, request_type
from tests.support.recording_proxy import RecordingProxy
from tests.support.replication import RefusingServer
from tests.support.servers import running_server
from tests.support.tls_certs import make_certificates
from tests.support.wire import parameters, stub

CPP_CLIENT = Path(__file__).resolve().parents[2] / "clients" / "cpp"
INSTALL = (
    "install the C++ toolchain and Debian's gRPC packages: apt-get install -y cmake g++ "
    "pkg-config libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc"
)
TOLERANCE = 1e-12


@dataclass
class CppBuild:
    """The built example, or why it could not be built (reported by each test as a failure)."""

    executable: Path | None
    problem: str | None
    runs: dict[str, subprocess.CompletedProcess[str]] = field(default_factory=dict)

    def require(self, program: str = "compute_gae") -> Path:
        """The built `program` (compute_gae, every_rpc, golden_cases) beside compute_gae."""
        if self.problem is not None or self.executable is None:
            pytest.fail(self.problem or "no executable", pytrace=False)
        return self.executable.with_name(program)

    def run(
        self, target: str, token: str | None = None, tls: dict[str, Path] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run the example against `target` (once per target, token, TLS files and session);
        `tls` maps ADVANTAGE_TLS_CA / _CLIENT_CERT / _CLIENT_KEY to PEM files."""
        key = f"{target} {token} {sorted((tls or {}).items())}"
        if key not in self.runs:
            env = {
                k: v
                for k, v in os.environ.items()
                if k != "ADVANTAGE_AUTH_TOKEN" and not k.startswith("ADVANTAGE_TLS_")
            }
            if token is not None:
                env["ADVANTAGE_AUTH_TOKEN"] = token
            env.update({name: str(path) for name, path in (tls or {}).items()})
            self.runs[key] = subprocess.run(
                [str(self.require()), target], capture_output=True, text=True, timeout=120, env=env
            )
        return self.runs[key]


def _build(build_dir: Path) -> CppBuild:
    tools = {
        "cmake": shutil.which("cmake"),
        "C++ compiler (g++)": shutil.which("c++") or shutil.which("g++"),
        "protoc": shutil.which("protoc"),
        "grpc_cpp_plugin": shutil.which("grpc_cpp_plugin"),
    }
    missing = [name for name, path in tools.items() if path is None]
    if missing:
        return CppBuild(None, f"missing {', '.join(missing)}; {INSTALL}")
    # No build type: no optimisation, the quickest build of the generated code.
    steps = (
        ["cmake", "-S", str(CPP_CLIENT), "-B", str(build_dir), "-DCMAKE_BUILD_TYPE="],
        ["cmake", "--build", str(build_dir), "--parallel", str(os.cpu_count() or 2)],
    )
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            output = (done.stdout + done.stderr)[-4000:]
            return CppBuild(None, f"`{' '.join(step)}` failed; {INSTALL}\n{output}")
    return CppBuild(build_dir / "compute_gae", None)


@pytest.fixture(scope="session")
def cpp_build(tmp_path_factory: pytest.TempPathFactory) -> CppBuild:
    return _build(tmp_path_factory.mktemp("cpp-client-build"))


def _output(cpp_build: CppBuild, target: str) -> list[list[str]]:
    run = cpp_build.run(target)
    assert run.returncode == 0, f"compute_gae exited {run.returncode}\n{run.stdout}{run.stderr}"
    return [line.split() for line in run.stdout.splitlines()]


def _gae_reference(
    reward: list[float],
    done: list[bool],
    terminated: list[bool],
    value: list[float],
    next_value: list[float],
    gamma: float,
    lmbda: float,
) -> list[float]:
    """TorchRL's GAE for one row: δ = r + γ(1−terminated)V′ − V, A_t = δ_t + γλ(1−done_t)A_{t+1}."""
    advantage = [0.0] * len(reward)
    following = 0.0
    for t in reversed(range(len(reward))):
        bootstrap = 0.0 if terminated[t] else gamma * next_value[t]  # V′ may be NaN there
        delta = reward[t] + bootstrap - value[t]
        following = delta + (0.0 if done[t] else gamma * lmbda * following)
        advantage[t] = following
    return advantage


def test_gae_with_client_values_matches_reference(cpp_build: CppBuild, grpc_target: str) -> None:
    lines = _output(cpp_build, grpc_target)
    header = next(line for line in lines if line[0] == "gae")
    gamma, lmbda = float(header[1]), float(header[2])
    batch, steps = int(header[3]), int(header[4])
    assert (batch, steps) == (2, 5)
    inputs = {(int(b), int(t)): rest for _, b, t, *rest in (x for x in lines if x[0] == "input")}
    results = {(int(b), int(t)): rest for _, b, t, *rest in (x for x in lines if x[0] == "result")}
    assert set(inputs) == set(results) == {(b, t) for b in range(batch) for t in range(steps)}

    flags = [(inputs[k][1], inputs[k][2]) for k in sorted(inputs)]
    # The trajectory exercises a termination, a truncation and running steps.
    assert {("1", "1"), ("1", "0"), ("0", "0")} <= set(flags)

    for b in range(batch):
        row = [inputs[(b, t)] for t in range(steps)]
        reward = [float(x[0]) for x in row]
        done = [x[1] == "1" for x in row]
        terminated = [x[2] == "1" for x in row]
        value = [float(x[3]) for x in row]
        next_value = [float(x[4]) for x in row]
        expected = _gae_reference(reward, done, terminated, value, next_value, gamma, lmbda)
        for t in range(steps):
            advantage, value_target = (float(x) for x in results[(b, t)])
            assert math.isclose(advantage, expected[t], rel_tol=0, abs_tol=TOLERANCE), (b, t)
            assert math.isclose(
                value_target, expected[t] + value[t], rel_tol=0, abs_tol=TOLERANCE
            ), (b, t)


def test_wrong_reward_shape_is_invalid_argument(cpp_build: CppBuild, grpc_target: str) -> None:
    errors = [line for line in _output(cpp_build, grpc_target) if line[0] == "error"]
    assert len(errors) == 1, errors
    assert errors[0][1] == "INVALID_ARGUMENT"
    message = " ".join(errors[0][2:])
    assert "trajectory." in message, message


def test_server_held_values_report_the_demo_model(cpp_build: CppBuild, grpc_target: str) -> None:
    """The example names this estimator as TorchRL does ("GAE"): the client accepts it."""
    served = [line for line in _output(cpp_build, grpc_target) if line[0] == "server_values"]
    assert len(served) == 1, served
    assert served[0][1:3] == ["model", "demo"]
    assert int(served[0][4]) >= 0
    assert served[0][5:] == ["shape", "2", "5"]


def test_unreachable_server_exits_with_unavailable(cpp_build: CppBuild) -> None:
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    run = cpp_build.run(f"127.0.0.1:{port}")
    assert run.returncode == 1
    assert "UNAVAILABLE" in run.stderr, run.stderr
    assert run.stdout == ""


def test_token_is_sent_to_a_server_that_requires_one(cpp_build: CppBuild) -> None:
    with running_server(Settings(auth_token="cpp-s3cret")) as server:
        refused = cpp_build.run(server.target)
        assert refused.returncode == 1
        assert "UNAUTHENTICATED" in refused.stderr, refused.stderr
        accepted = cpp_build.run(server.target, token="cpp-s3cret")
        assert accepted.returncode == 0, accepted.stderr
        assert "server_values model demo" in accepted.stdout


def test_tls_and_mutual_tls(cpp_build: CppBuild, tmp_path: Path) -> None:
    certs = make_certificates(tmp_path)
    trusted = {"ADVANTAGE_TLS_CA": certs.ca}
    settings = Settings(tls_cert=certs.server_cert, tls_key=certs.server_key, auth_token="cpp-t")
    with running_server(settings) as server:
        accepted = cpp_build.run(server.target, token="cpp-t", tls=trusted)
        assert accepted.returncode == 0, accepted.stderr
        assert "server_values model demo" in accepted.stdout
        for tls in (None, {"ADVANTAGE_TLS_CA": certs.other_ca}):  # plaintext, untrusted CA
            refused = cpp_build.run(server.target, token="cpp-t", tls=tls)
            assert refused.returncode == 1
            assert "UNAVAILABLE" in refused.stderr, refused.stderr
    mutual = Settings(tls_cert=certs.server_cert, tls_key=certs.server_key, tls_client_ca=certs.ca)
    with running_server(mutual) as server:
        client = {
            **trusted,
            "ADVANTAGE_TLS_CLIENT_CERT": certs.client_cert,
            "ADVANTAGE_TLS_CLIENT_KEY": certs.client_key,
        }
        accepted = cpp_build.run(server.target, tls=client)
        assert accepted.returncode == 0, accepted.stderr
        refused = cpp_build.run(server.target, tls=trusted)
        assert refused.returncode == 1
        assert "UNAVAILABLE" in refused.stderr, refused.stderr
    half = cpp_build.run("127.0.0.1:1", tls={"ADVANTAGE_TLS_CLIENT_KEY": certs.client_key})
    assert half.returncode == 1 and "together (mutual TLS), or neither" in half.stderr, half.stderr


def test_read_your_writes_version_is_sent(cpp_build: CppBuild, grpc_target: str) -> None:
    lines = _output(cpp_build, grpc_target)
    served = next(line for line in lines if line[0] == "server_values")
    again = next(line for line in lines if line[0] == "min_version")
    assert again[1] == served[4] and int(again[3]) >= int(again[1])


def test_a_list_of_servers_is_balanced_and_unavailable_is_retried(
    cpp_build: CppBuild, grpc_target: str
) -> None:
    refusing = RefusingServer()  # SERVING by health, UNAVAILABLE to every call
    try:
        run = cpp_build.run(f"{refusing.target},{grpc_target}")
    finally:
        refusing.stop()
    assert run.returncode == 0, run.stdout + run.stderr
    assert "server_values model demo" in run.stdout
    assert refusing.calls > 0  # round_robin sent calls there; each was retried on the other
    named = cpp_build.run(f"localhost:1,{grpc_target}")
    assert named.returncode == 1
    assert "use a 'dns:///name:port' target" in named.stderr, named.stderr


GOLDEN_CASES = load_cases()


@dataclass
class GoldenRun:
    """golden_cases' JSON lines by case name, and the request bytes a proxy saw, in order."""

    lines: dict[str, dict]
    sent: list[tuple[str, bytes]]


@pytest.fixture(scope="module")
def golden_run(cpp_build: CppBuild) -> GoldenRun:
    """golden_cases through a recording proxy in front of a fresh demo server (the cases expect
    parameter version 0, so no other test's server)."""
    program = cpp_build.require("golden_cases")
    with running_server() as server, RecordingProxy(server.target) as proxy:
        run = subprocess.run(
            [str(program), str(TESTDATA), proxy.target], capture_output=True, text=True, timeout=600
        )
        assert run.returncode == 0, run.stderr
        sent = []
        counters: dict[str, int] = {}
        for rpc in (case["rpc"] for case in GOLDEN_CASES):  # file order, one request each
            index = counters.get(rpc, 0)
            counters[rpc] = index + 1
            requests = proxy.requests(rpc)
            sent.append((rpc, requests[index] if index < len(requests) else b""))
        assert all(len(proxy.requests(rpc)) == n for rpc, n in counters.items())
    lines = {line["name"]: line for line in map(json.loads, run.stdout.splitlines())}
    return GoldenRun(lines, sent)


@pytest.mark.parametrize("index", range(len(GOLDEN_CASES)),
                         ids=[case["name"] for case in GOLDEN_CASES])  # fmt: skip
def test_golden_case(golden_run: GoldenRun, index: int) -> None:
    case = GOLDEN_CASES[index]
    line = golden_run.lines[case["name"]]
    if "message_equal" in line:  # the cases with a ToProto, compared in C++
        assert line["message_equal"] and line["bytes_equal"], line
    rpc, sent = golden_run.sent[index]
    message = request_type(rpc)
    assert message.FromString(sent) == message.FromString(case["request_bytes"])
    assert sent == case["request_bytes"]
    assert compare_answer(case, line["answer"]) == []


def test_every_rpc_against_a_real_server(cpp_build: CppBuild) -> None:
    with running_server() as server:  # every_rpc changes the model: a server of its own
        run = subprocess.run(
            [str(cpp_build.require("every_rpc")), server.target],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert run.returncode == 0, run.stdout + run.stderr
        lines = [line.split() for line in run.stdout.splitlines()]
        version, after = parameters(stub(server.target))
    by_kind: dict[str, list[list[str]]] = {}
    for line in lines:
        by_kind.setdefault(line[0], []).append(line)
    assert by_kind["models"] == [["models", "1", "first", "demo", "version", "0", "input",
                                  "observation", "4"]]  # fmt: skip
    model = by_kind["model"][0]
    assert model[:6] == ["model", "demo", "version", "0", "actor", "DISTRIBUTION_CATEGORICAL"]
    assert float(model[9]) == 0.99 and float(model[11]) == 0.95
    # the fields later rounds added to ModelInfo, read by the typed struct and its message
    assert model[12:] == ["agents", "0", "networks", "shared", "heads", "0", "world_model", "0",
                          "qvalue", "0"]  # fmt: skip
    error = by_kind["error"][0]
    assert error[1:3] == ["GetModel", "NOT_FOUND"] and "no-such-model" in " ".join(error)
    advantage = by_kind["advantage"][0]
    assert advantage[1:4] == ["demo", "version", "0"] and len(advantage) == 4 + 2 * 4
    loss = by_kind["loss"][0]
    assert float(loss[1]) == pytest.approx(float(loss[3]), rel=1e-6)  # the sum of its terms
    assert loss[4:] == ["version", "0", "updated", "0"]
    parameter_line = by_kind["parameters"][0]
    assert parameter_line[1:3] == ["version", "0"]
    assert int(parameter_line[4]) == len(after)
    assert int(parameter_line[6]) == sum(t.numel() for t in after.values())
    # The watcher saw the version before and after the SetParameters, nothing else.
    assert by_kind["watch"] == [["watch", "demo", "0"], ["watch", "demo", "1"]]
    assert by_kind["set"] == [["set", "version", "1", "tensors", "1"]]
    name, before_value, after_value = by_kind["changed"][0][1:]
    assert float(after_value) == pytest.approx(float(before_value) + 1, abs=1e-6)
    assert version == 1  # seen by an independent reader: the change is on the server
    assert after[name].flatten()[0].item() == pytest.approx(float(after_value), abs=1e-6)
    stale = by_kind["stale"][0]
    assert stale[1] == "FAILED_PRECONDITION" and "parameter_version" in " ".join(stale)
    assert "watch_error" not in by_kind


# ---- Form::kAuto (the default): tests/forms.cc ---------------------------------------------------


@dataclass
class FormsRun:
    """`forms`' requests (as sent), answers and refusals, by (case, form)."""

    raw: dict[tuple[str, str], bytes]
    advantages: dict[tuple[str, str], np.ndarray]
    refused: dict[tuple[str, str], str]

    def request(self, case: str, form: str) -> pb.ComputeAdvantageRequest:
        return pb.ComputeAdvantageRequest.FromString(self.raw[(case, form)])


@pytest.fixture(scope="module")
def forms_run(cpp_build: CppBuild, grpc_target: str) -> FormsRun:
    run = subprocess.run(
        [str(cpp_build.require("forms")), grpc_target], capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stdout + run.stderr
    out = FormsRun({}, {}, {})
    for kind, case, form, *rest in (line.split(" ") for line in run.stdout.splitlines()):
        if kind == "request":
            out.raw[(case, form)] = bytes.fromhex(rest[0])
        elif kind == "advantage":
            out.advantages[(case, form)] = np.array([float(x) for x in rest])
        else:
            out.refused[(case, form)] = " ".join(rest)
    return out


def _full_arrays(request: pb.ComputeAdvantageRequest) -> dict[str, np.ndarray]:
    """The trajectory arrays of a full-form request, as numpy (the Python client's input)."""
    traj = request.trajectory
    assert traj.form == pb.TRAJECTORY_FORM_FULL
    arrays = {
        name: decode_tensor(getattr(traj, name), name).numpy()
        for name in ("reward", "done", "terminated")
    }
    arrays["observation"] = decode_tensor(traj.observation["observation"], "o").numpy()
    arrays["next_observation"] = decode_tensor(traj.next_observation["observation"], "n").numpy()
    if traj.HasField("mask"):
        arrays["mask"] = decode_tensor(traj.mask, "mask").numpy()
    return arrays


def _python_client_trajectory(arrays: dict[str, np.ndarray]) -> pb.Trajectory:
    """The trajectory the Python client's form="auto" builds from the same arrays."""
    prepared = prepare_request(form="auto", **arrays)
    return pb.Trajectory.FromString(prepared.request.trajectory.SerializeToString())


def test_auto_form_sends_chained_observations_compact(forms_run: FormsRun) -> None:
    auto = forms_run.request("chained", "auto")
    assert auto.trajectory.form == pb.TRAJECTORY_FORM_COMPACT
    assert forms_run.raw[("chained", "auto")] == forms_run.raw[("chained", "compact")]
    assert len(forms_run.raw[("chained", "auto")]) < len(forms_run.raw[("chained", "full")])
    full = _full_arrays(forms_run.request("chained", "full"))
    # The compact form written out here: each row's T observations, then its last step's next
    # observation; the next observations of the truncated steps (done, not terminated).
    obs, nxt = full["observation"], full["next_observation"]
    truncated = full["done"] & ~full["terminated"]
    assert truncated.sum() == 3  # (0, 4), (1, 3), (1, 5) by construction
    compact = decode_tensor(auto.trajectory.observation["observation"], "o").numpy()
    kept = decode_tensor(auto.trajectory.next_observation["observation"], "n").numpy()
    np.testing.assert_array_equal(compact, np.concatenate([obs, nxt[:, -1:]], axis=1))
    np.testing.assert_array_equal(kept, nxt[truncated])
    assert auto.trajectory == _python_client_trajectory(full)
    # The server's numbers for both forms (its value network runs on other rows: float32 noise).
    np.testing.assert_allclose(
        forms_run.advantages[("chained", "auto")],
        forms_run.advantages[("chained", "full")],
        rtol=1e-6,
        atol=1e-6,
    )


def test_auto_form_sends_unchained_observations_full(forms_run: FormsRun) -> None:
    auto = forms_run.request("unchained", "auto")
    assert auto.trajectory.form == pb.TRAJECTORY_FORM_FULL
    assert forms_run.raw[("unchained", "auto")] == forms_run.raw[("unchained", "full")]
    assert auto.trajectory == _python_client_trajectory(_full_arrays(auto))
    np.testing.assert_array_equal(
        forms_run.advantages[("unchained", "auto")], forms_run.advantages[("unchained", "full")]
    )
    # An explicit compact form is refused before anything is sent, naming the step.
    refused = forms_run.refused[("unchained", "compact")]
    assert "compact form needs next_observation[t] == observation[t + 1]" in refused, refused
    assert "row 0, step 1" in refused and "Form::kFull" in refused, refused
    assert ("unchained", "compact") not in forms_run.advantages


def test_auto_form_with_a_mask_leaves_padding_untruncated(forms_run: FormsRun) -> None:
    auto = forms_run.request("masked", "auto")
    assert auto.trajectory.form == pb.TRAJECTORY_FORM_COMPACT
    assert forms_run.raw[("masked", "auto")] == forms_run.raw[("masked", "compact")]
    full = _full_arrays(forms_run.request("masked", "full"))
    assert not full["mask"][1, 4:].any() and full["mask"][:, :4].all()
    # Padding is terminated: of the three truncated steps only (0, 4) and (1, 3) remain.
    kept = decode_tensor(auto.trajectory.next_observation["observation"], "n").numpy()
    nxt = full["next_observation"]
    np.testing.assert_array_equal(kept, np.stack([nxt[0, 4], nxt[1, 3]]))
    assert auto.trajectory == _python_client_trajectory(full)
    np.testing.assert_allclose(
        forms_run.advantages[("masked", "auto")],
        forms_run.advantages[("masked", "full")],
        rtol=1e-6,
        atol=1e-6,
    )


def test_auto_form_with_agents_or_without_observations_is_full(forms_run: FormsRun) -> None:
    agents = forms_run.request("agents", "auto").trajectory
    assert agents.form == pb.TRAJECTORY_FORM_FULL and agents.n_agents == 1
    assert list(agents.observation["observation"].shape) == [2, 6, 1, 4]
    values = forms_run.request("values", "auto").trajectory
    assert values.form == pb.TRAJECTORY_FORM_FULL and not values.observation


def test_auto_and_compact_forms_at_the_edges(forms_run: FormsRun) -> None:
    # A chained NaN is not equal to itself: the full form, as the Python client decides.
    nan = forms_run.request("nan", "auto")
    assert nan.trajectory.form == pb.TRAJECTORY_FORM_FULL
    assert nan.trajectory == _python_client_trajectory(_full_arrays(nan))
    no_next = forms_run.request("no_next", "auto").trajectory
    assert no_next.form == pb.TRAJECTORY_FORM_FULL and not no_next.next_observation
    refused = forms_run.refused[("no_next", "compact")]
    assert 'from full-form observations needs next_observation["observation"]' in refused
    refused = forms_run.refused[("prebuilt", "compact")]
    assert 'next_observation["observation"] is needed at the 3 truncated steps' in refused
    # Compact-layout observations are sent as given, with an empty [0, 4] next observation.
    prebuilt = forms_run.request("prebuilt_untruncated", "compact")
    traj = prebuilt.trajectory
    assert traj.form == pb.TRAJECTORY_FORM_COMPACT
    assert list(traj.observation["observation"].shape) == [2, 7, 4]
    empty = traj.next_observation["observation"]
    assert list(empty.shape) == [0, 4] and empty.dtype == pb.DTYPE_FLOAT32 and not empty.raw_data
    python = prepare_request(
        form="compact",
        reward=decode_tensor(traj.reward, "reward").numpy(),
        done=decode_tensor(traj.done, "done").numpy(),
        observation=decode_tensor(traj.observation["observation"], "o").numpy(),
    ).request.trajectory
    assert traj == pb.Trajectory.FromString(python.SerializeToString())
