"""Estimators named as TorchRL names them (`ValueEstimators` members, estimator classes) over
REST: the same answer as the service's names; the names TorchRL has and the service lacks
(MAGAE) are refused, saying which names exist."""

from __future__ import annotations

import httpx
import pytest
from torchrl.objectives import ValueEstimators

from service.estimators.registry import ESTIMATORS, estimator_named
from service.wire.json import estimator_name
from tests.support.rest import sample

# TorchRL's spelling → the service's, for every ValueEstimators member the service has.
TORCHRL_NAMES = {
    "GAE": "gae",
    "TD0": "td0",
    "TD1": "td1",
    "TDLambda": "td_lambda",
    "VTrace": "vtrace",
    "TD0Estimator": "td0",
    "TD1Estimator": "td1",
    "TDLambdaEstimator": "td_lambda",
    "tdlambda": "td_lambda",
    "td-lambda": "td_lambda",
    "Gae": "gae",
}


def test_every_value_estimators_member_but_magae_is_named() -> None:
    for member in ValueEstimators:
        expected = None if member.name == "MAGAE" else TORCHRL_NAMES[member.name]
        assert estimator_named(member.name) == expected, member.name
    for name, request_name in TORCHRL_NAMES.items():
        assert estimator_named(name) == request_name
    for request_name in ESTIMATORS:
        assert estimator_named(request_name) == request_name
    assert estimator_named("QValue") is None


@pytest.mark.parametrize(("torchrl_name", "request_name"), sorted(TORCHRL_NAMES.items()))
def test_torchrl_names_give_the_same_answer(
    http: httpx.Client, torchrl_name: str, request_name: str
) -> None:
    body = sample(http)
    knobs = {"gamma": 0.9} if request_name in ("td0", "td1") else {"gamma": 0.9, "lmbda": 0.8}
    answers = []
    for estimator in (
        {"name": request_name, **knobs},
        {"name": torchrl_name, **knobs},
        torchrl_name,
        request_name,
    ):
        response = http.post("/v1/advantage", json={**body, "estimator": estimator})
        assert response.status_code == 200, response.text
        answers.append(response.json())
    assert answers[1]["advantage"] == answers[0]["advantage"]
    assert answers[1]["value_target"] == answers[0]["value_target"]
    assert answers[2]["value_target"] == answers[3]["value_target"]
    # and the metrics label is the service's name
    assert estimator_name({"estimator": torchrl_name}) == request_name


def test_a_name_the_service_lacks_is_refused(http: httpx.Client) -> None:
    body = sample(http)
    response = http.post("/v1/advantage", json={**body, "estimator": "MAGAE"})
    assert response.status_code == 400
    message = response.json()["message"]
    assert message.startswith("estimator.name: expected one of ['td0', 'td1', 'td_lambda'")
    assert "TorchRL's names" in message
    assert message.endswith('got "MAGAE"') or message.endswith("got 'MAGAE'"), message
