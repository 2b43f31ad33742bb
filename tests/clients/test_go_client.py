"""The Go client (clients/go) built offline from Debian's Go packages and run against real servers.

`clients/go/go-offline.sh test` generates the stubs with protoc, protoc-gen-go and
protoc-gen-go-grpc, builds the module in GOPATH mode against /usr/share/gocode and runs its
`go test` suite once per session against the servers of `tests.support.polyglot` (demo model;
token; TLS; mutual TLS). Each test here checks that the Go tests it names passed: TorchRL's
numbers for every estimator and two losses (tests/support/client_cases.py), hand-worked GAE,
the default form (compact when the observations chain, else full: same answers), error statuses
naming the field, auth, TLS, and every golden vector of proto/testdata.
Missing tools or packages FAIL the tests with the apt-get line that installs them.
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

GO_CLIENT = Path(__file__).resolve().parents[2] / "clients" / "go"
INSTALL = (
    "install Go and Debian's gRPC Go packages: apt-get install -y golang-go protobuf-compiler "
    "protoc-gen-go protoc-gen-go-grpc golang-google-grpc-dev golang-google-protobuf-dev "
    "golang-github-golang-protobuf-1-5-dev"
)


@pytest.fixture(scope="module")
def go_run(tmp_path_factory: pytest.TempPathFactory) -> SuiteRun:
    tools = ["go", "protoc", "protoc-gen-go", "protoc-gen-go-grpc"]
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing or not Path("/usr/share/gocode/src/google.golang.org/grpc").is_dir():
        return SuiteRun(
            {}, "", f"missing {', '.join(missing) or 'golang-google-grpc-dev'}; {INSTALL}"
        )
    folder = tmp_path_factory.mktemp("go-client")
    return run_client_suite(
        folder,
        [str(GO_CLIENT / "go-offline.sh"), "test", "-count=1", "-v", "."],
        {
            "ADVANTAGE_GO_WORK": str(folder / "work"),
            "GRPC_GO_RETRY": "on",  # grpc-go < 1.40 retries only with it
        },
        INSTALL,
        "`go test`",
    )


def test_every_go_test_passed_and_none_was_skipped(go_run: SuiteRun) -> None:
    go_run.require_all_passed(at_least=len(ADVANTAGE_CASES) + len(GOLDEN_CASES) + 19)
    assert "\nok " in go_run.output, go_run.output


def test_encoding_follows_the_contracts_worked_example(go_run: SuiteRun) -> None:
    go_run.require(
        "TestTensorEncodingIsTheContractsWorkedExample",
        "TestTensorRoundTripsAndWidensFloat32",
        "TestMalformedTensorIsRefusedNamingTheField",
        "TestChannelTarget",
    )


@pytest.mark.parametrize("case", ADVANTAGE_CASES)
def test_compute_advantage_matches_torchrl(go_run: SuiteRun, case: str) -> None:
    go_run.require(f"TestReferenceAdvantage/{case}")


@pytest.mark.parametrize("case", LOSS_CASES)
def test_compute_loss_matches_torchrl(go_run: SuiteRun, case: str) -> None:
    go_run.require(f"TestReferenceLoss/{case}")


def test_hand_worked_gae(go_run: SuiteRun) -> None:
    go_run.require("TestComputeAdvantageHandWorked")


def test_auto_form_sends_compact_only_when_the_data_allows_it(go_run: SuiteRun) -> None:
    go_run.require(
        "TestAutoFormSendsCompactWhenObservationsChain",
        "TestAutoFormSendsFullWhenObservationsDoNotChain",
        "TestAutoFormWithAgentsSendsFull",
        "TestCompactFormRefusesObservationsThatDoNotChain",
    )


def test_models_and_parameters(go_run: SuiteRun) -> None:
    go_run.require(
        "TestListModelsAndGetModel",
        "TestGetParametersReassemblesChunks",
        "TestSetParametersRoundTrip",
        "TestWatchModelsSeesAWrite",
    )


def test_error_statuses_name_the_field(go_run: SuiteRun) -> None:
    go_run.require(
        "TestInvalidArgumentNamesTheField",
        "TestVersionsAreChecked",
        "TestUnreachableServerIsUnavailable",
    )


def test_a_list_of_servers_is_balanced_and_unavailable_is_retried(go_run: SuiteRun) -> None:
    go_run.require("TestListOfServersIsBalancedAndUnavailableRetried")
    assert go_run.refused_calls > 0  # round_robin sent calls there; each was retried


def test_token_tls_and_mutual_tls(go_run: SuiteRun) -> None:
    go_run.require("TestTokenIsSentWithEveryCall", "TestTLS", "TestMutualTLS")


@pytest.mark.parametrize("case", GOLDEN_CASES)
def test_golden_vector(go_run: SuiteRun, case: str) -> None:
    go_run.require(f"TestGolden/{case}")
