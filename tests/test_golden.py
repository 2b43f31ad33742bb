"""proto/testdata/ (the golden vectors every client's tests run) is what the generator makes now:
the same request bytes and the reference's numbers (`python -m tests.support.golden --check`)."""

from __future__ import annotations

from tests.support.golden import (
    TESTDATA,
    build_request,
    check,
    compare_answer,
    load_cases,
    request_type,
)


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


def _case(name: str) -> dict:
    return next(case for case in load_cases() if case["name"] == name)


def test_the_answer_checker_catches_each_kind_of_difference() -> None:
    """compare_answer (which every client's golden test relies on) is not a rubber stamp."""
    case = _case("gae_full")
    tensors = {k: dict(v) for k, v in case["expect"]["tensors"].items()}
    right = {"status": "OK", "model_name": "demo", "parameter_version": 0, "tensors": tensors}
    assert compare_answer(case, right) == []
    off = [*tensors["advantage"]["values"]]
    off[3] += 1e-3
    assert compare_answer(case, {**right, "tensors": {**tensors, "advantage": {
        **tensors["advantage"], "values": off}}})  # fmt: skip
    assert compare_answer(case, {**right, "tensors": {**tensors, "advantage": {
        **tensors["advantage"], "dtype": "float64"}}})  # fmt: skip
    assert compare_answer(case, {**right, "tensors": {"advantage": tensors["advantage"]}})
    assert compare_answer(case, {**right, "parameter_version": 1})
    assert compare_answer(case, {"status": "INVALID_ARGUMENT", "message": "x"})

    error = _case("error_unknown_model")
    assert compare_answer(error, {"status": "NOT_FOUND", "message": "no 'no-such-model'"}) == []
    assert compare_answer(error, {"status": "NOT_FOUND", "message": "no such model"})
    assert compare_answer(error, {"status": "INVALID_ARGUMENT", "message": "no-such-model"})

    loss = _case("loss_a2c")
    metrics = dict(loss["expect"]["metrics"])
    ok = {"status": "OK", "model_name": "demo", "parameter_version": 0, "updated": False,
          "loss": loss["expect"]["loss"], "metrics": metrics}  # fmt: skip
    assert compare_answer(loss, ok) == []
    assert compare_answer(loss, {**ok, "loss": ok["loss"] * 1.01})
    assert compare_answer(loss, {**ok, "metrics": {k: v for k, v in metrics.items()
                                                   if k != "entropy"}})  # fmt: skip
    assert compare_answer(loss, {**ok, "updated": True})
