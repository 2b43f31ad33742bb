"""Real servers and result parsing for the client test suites in other languages (Go, Java).

`client_test_servers(folder)` starts the servers such a suite needs, all on loopback: the demo
model plain, one with a token, one with TLS, one with mutual TLS, and one that is SERVING by health
but answers every call UNAVAILABLE (for the balancing tests). It writes the reference cases
(tests/support/client_cases.py) and test certificates into `folder` and yields the environment
variables that tell the suite where everything is (listed at the top of clients/go/client_test.go
and in clients/java's ClientTest.java).

Both suites print one line per test and subtest in Go's verbose format, `--- PASS: Name (0.01s)`
(subtests `Name/case`, indented), which `parse_results` reads.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from service.settings import Settings
from tests.support.client_cases import write_cases
from tests.support.replication import RefusingServer
from tests.support.servers import running_server
from tests.support.tls_certs import make_certificates

TOKEN = "polyglot-s3cret"
GOLDEN = Path(__file__).resolve().parents[2] / "proto" / "testdata"
# The golden case names (proto/testdata/cases.json), each a subtest of the suites' golden test.
GOLDEN_CASES = [case["name"] for case in json.loads((GOLDEN / "cases.json").read_text())["cases"]]
RESULT = re.compile(r"^\s*--- (PASS|FAIL|SKIP): (\S+)")


@dataclass
class ClientTestServers:
    """What a suite runs against: its environment variables, and the server that refuses every
    call (its `calls` show whether a balanced client sent it any)."""

    variables: dict[str, str]
    refusing: RefusingServer


@contextmanager
def client_test_servers(folder: Path) -> Iterator[ClientTestServers]:
    """Start the servers; yield the suite's environment variables and the refusing server."""
    cases = folder / "cases.json"
    write_cases(cases)
    certs = make_certificates(folder / "certs")
    tls = Settings(tls_cert=certs.server_cert, tls_key=certs.server_key)
    mutual = Settings(tls_cert=certs.server_cert, tls_key=certs.server_key, tls_client_ca=certs.ca)
    with ExitStack() as stack:
        servers = {
            name: stack.enter_context(running_server(settings))
            for name, settings in {
                "ADVANTAGE_TEST_TARGET": Settings(),
                "ADVANTAGE_TEST_TOKEN_TARGET": Settings(auth_token=TOKEN),
                "ADVANTAGE_TEST_TLS_TARGET": tls,
                "ADVANTAGE_TEST_MTLS_TARGET": mutual,
            }.items()
        }
        refusing = RefusingServer()  # SERVING by health, UNAVAILABLE to every call
        stack.callback(refusing.stop)
        yield ClientTestServers(
            {
                **{name: server.target for name, server in servers.items()},
                "ADVANTAGE_TEST_REFUSING_TARGET": refusing.target,
                "ADVANTAGE_TEST_TOKEN": TOKEN,
                "ADVANTAGE_TEST_CASES": str(cases),
                "ADVANTAGE_TEST_CERTS": str(certs.ca.parent),
                "ADVANTAGE_TEST_GOLDEN": str(GOLDEN),
            },
            refusing,
        )


def parse_results(output: str) -> dict[str, str]:
    """{test name (subtests "Test/case"): "PASS" | "FAIL" | "SKIP"} from verbose test output."""
    return {match[2]: match[1] for match in map(RESULT.match, output.splitlines()) if match}


@dataclass
class SuiteRun:
    """The outcome of one run of a client's test suite: each test's status, and its output (or
    why the suite could not run: reported as a failure by every test that needs it)."""

    results: dict[str, str]
    output: str
    problem: str | None = None
    refused_calls: int = 0  # calls the refusing server answered during the run

    def require(self, *names: str) -> None:
        """Fail unless the suite ran and each named test (or subtest) passed."""
        if self.problem is not None:
            pytest.fail(self.problem, pytrace=False)
        for name in names:
            status = self.results.get(name)
            assert status == "PASS", f"test {name}: {status or 'did not run'}\n{self.output}"

    def require_all_passed(self, at_least: int) -> None:
        """Fail unless at least `at_least` tests ran and none failed or was skipped."""
        self.require()
        assert len(self.results) >= at_least, self.results
        failed = {name: status for name, status in self.results.items() if status != "PASS"}
        assert not failed, f"{failed}\n{self.output}"


def run_client_suite(
    folder: Path, command: list[str], env: dict[str, str], install: str, what: str
) -> SuiteRun:
    """Run a client's test suite (`command`, printing Go-style result lines) against the
    servers of `client_test_servers(folder)`, with their variables and `env` set; `install`
    says how to get the toolchain when nothing ran, `what` names the suite there."""
    with client_test_servers(folder) as servers:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=1200,
            env={**os.environ, **servers.variables, **env},
        )
        refused = servers.refusing.calls
    output = done.stdout + done.stderr
    results = parse_results(done.stdout)
    problem = None if results else f"{what} ran no test; {install}\n{output[-4000:]}"
    return SuiteRun(results, output[-20000:], problem, refused)
