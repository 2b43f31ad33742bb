"""The Java client (clients/java) built with javac against Debian's jars and run against real
servers.

`clients/java/build.sh test` generates the messages and the service stub with protoc and Debian's
grpc_java_plugin, compiles them with the client and its tests against libgrpc-java and
libprotobuf-java (no Maven, no download) and runs the tests (a plain runner, Go's verbose output
format) once per session against the servers of `tests.support.polyglot` (demo model; token; TLS;
mutual TLS). Each test here checks that the Java tests it names passed: TorchRL's numbers for
every estimator and two losses (tests/support/client_cases.py), hand-worked GAE, the default
form (compact when the observations chain, else full: same answers), error statuses naming the
field, auth, TLS, and every golden vector of proto/testdata. Missing tools or packages
FAIL the tests with the apt-get line that installs them.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.support.client_cases import ADVANTAGE_CASES, LOSS_CASES
from tests.support.polyglot import (
    GOLDEN_CASES,
    SuiteRun,
    run_client_suite,
)

JAVA_CLIENT = Path(__file__).resolve().parents[2] / "clients" / "java"
INSTALL = (
    "install a JDK and Debian's gRPC Java packages: apt-get install -y default-jdk-headless "
    "protobuf-compiler protobuf-compiler-grpc-java-plugin libgrpc-java libprotobuf-java "
    "libnetty-java libperfmark-java libgoogle-gson-java libgeronimo-annotation-1.3-spec-java "
    "libnetty-tcnative-java libnetty-tcnative-jni"
)


@pytest.fixture(scope="module")
def java_run(tmp_path_factory: pytest.TempPathFactory) -> SuiteRun:
    missing = [t for t in ("java", "javac", "protoc", "grpc_java_plugin") if not shutil.which(t)]
    if missing:
        return SuiteRun({}, "", f"missing {', '.join(missing)}; {INSTALL}")
    folder = tmp_path_factory.mktemp("java-client")
    return run_client_suite(
        folder,
        [str(JAVA_CLIENT / "build.sh"), "test"],
        {"ADVANTAGE_JAVA_BUILD": str(folder / "build")},
        INSTALL,
        "the Java build",
    )


def test_every_java_test_passed(java_run: SuiteRun) -> None:
    java_run.require_all_passed(at_least=len(ADVANTAGE_CASES) + len(GOLDEN_CASES) + 16)
    assert "\nPASS\n" in java_run.output, java_run.output


def test_encoding_follows_the_contracts_worked_example(java_run: SuiteRun) -> None:
    java_run.require(
        "tensorEncodingIsTheContractsWorkedExample",
        "malformedTensorIsRefusedNamingTheField",
        "channelTarget",
    )


@pytest.mark.parametrize("case", ADVANTAGE_CASES)
def test_compute_advantage_matches_torchrl(java_run: SuiteRun, case: str) -> None:
    java_run.require(f"referenceAdvantage/{case}")


@pytest.mark.parametrize("case", LOSS_CASES)
def test_compute_loss_matches_torchrl(java_run: SuiteRun, case: str) -> None:
    java_run.require(f"referenceLoss/{case}")


def test_hand_worked_gae(java_run: SuiteRun) -> None:
    java_run.require("computeAdvantageHandWorked")


def test_auto_form_sends_compact_only_when_the_data_allows_it(java_run: SuiteRun) -> None:
    java_run.require(
        "autoFormSendsCompactWhenObservationsChain",
        "autoFormSendsFullWhenObservationsDoNotChain",
        "autoFormWithAgentsSendsFull",
        "compactFormRefusesObservationsThatDoNotChain",
    )


def test_models_and_parameters(java_run: SuiteRun) -> None:
    java_run.require(
        "listModelsAndGetModel",
        "getParametersReassemblesChunks",
        "setParametersRoundTrip",
        "watchModelsSeesAWrite",
    )


def test_error_statuses_name_the_field(java_run: SuiteRun) -> None:
    java_run.require(
        "invalidArgumentNamesTheField", "versionsAreChecked", "unreachableServerIsUnavailable"
    )


def test_a_list_of_servers_is_balanced_and_unavailable_is_retried(java_run: SuiteRun) -> None:
    java_run.require("listOfServersIsBalancedAndUnavailableRetried")
    assert java_run.refused_calls > 0  # round_robin sent calls there; each was retried


def test_token_tls_and_mutual_tls(java_run: SuiteRun) -> None:
    java_run.require("tokenIsSentWithEveryCall", "tls", "mutualTls")


@pytest.mark.parametrize("case", GOLDEN_CASES)
def test_golden_vector(java_run: SuiteRun, case: str) -> None:
    java_run.require(f"golden/{case}")
