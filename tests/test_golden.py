"""proto/testdata/ (the golden vectors every client's tests run) is what the generator makes now:
the same request bytes and the reference's numbers (`python -m tests.support.golden --check`)."""

from __future__ import annotations

from tests.support.golden import TESTDATA, build_request, check, load_cases, request_type


def test_golden_vectors_are_up_to_date() -> None:
    assert check() == []


def test_every_request_file_parses_to_its_input() -> None:
    cases = load_cases()
    assert len({case["name"] for case in cases}) == len(cases)
    for case in cases:
        parsed = request_type(case["rpc"]).FromString(case["request_bytes"])
        assert parsed == build_request(case["rpc"], case["input"]), case["name"]
    assert {p.name for p in TESTDATA.glob("*.binpb")} == {case["request"] for case in cases}


def test_the_cases_cover_every_estimator_form_loss_and_an_error_per_status() -> None:
    cases = load_cases()
    advantage = {
        (case["input"]["estimator"]["kind"], case["input"]["form"])
        for case in cases
        if case["rpc"] == "ComputeAdvantage" and case["expect"]["status"] == "OK"
    }
    estimators = {"td0", "td1", "td_lambda", "gae", "vtrace"}
    assert {(e, f) for e in estimators for f in ("full", "compact")} <= advantage
    losses = {
        case["input"]["loss"]["kind"]
        for case in cases
        if case["rpc"] == "ComputeLoss" and case["expect"]["status"] == "OK"
    }
    assert losses == {"ppo_clip", "ppo_kl", "ppo", "a2c", "reinforce", "impala"}
    statuses = {case["expect"]["status"] for case in cases}
    assert {"OK", "INVALID_ARGUMENT", "NOT_FOUND", "FAILED_PRECONDITION"} <= statuses
    assert {case["rpc"] for case in cases} == {
        "ComputeAdvantage", "ComputeLoss", "ListModels", "GetModel", "GetParameters"
    }  # fmt: skip
