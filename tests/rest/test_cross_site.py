"""REST refuses cross-site writes: Host allow-list, same-origin Origin, JSON content type
(issue 15, finding 4: CSRF and DNS rebinding against a server with auth off)."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import torch

from service.api.metrics import Metrics
from service.api.rest import RestOptions, create_app
from service.api.rest.guard import split_host
from service.cli import build_settings
from service.models.demo import demo_model
from service.models.registry import ModelRegistry
from service.runtime import Runtime
from service.settings import Settings
from tests.support.rest import sample

JSON = {"content-type": "application/json"}


def version(http: httpx.Client) -> int:
    return http.get("/v1/models/demo").json()["model"]["parameter_version"]


def test_a_foreign_page_cannot_train_the_model(http: httpx.Client) -> None:
    """The issue's request: text/plain, a foreign Origin and Host, apply_update."""
    body = {**sample(http), "loss": "a2c", "apply_update": True}
    before = version(http)
    attack = http.post(
        "/v1/loss",
        json=body,
        headers={
            "content-type": "text/plain",
            "origin": "http://evil.example",
            "host": "evil.example",
        },
    )
    assert attack.status_code == 403, attack.text
    assert attack.json()["code"] == "PERMISSION_DENIED"
    assert attack.json()["message"].startswith("host: 'evil.example' is not a host")
    assert version(http) == before


@pytest.mark.parametrize(
    ("headers", "status", "message"),
    [
        # a DNS-rebinding page: the server's own address, the page's own name as Host
        ({"host": "evil.example:8080"}, 403, "host: 'evil.example' is not a host"),
        # a cross-site form/fetch to the right host: the browser says where it comes from
        ({"origin": "http://evil.example"}, 403, "origin: 'http://evil.example' is not this"),
        ({"origin": "http://127.0.0.1:1"}, 403, "origin: 'http://127.0.0.1:1'"),  # other port
        ({"origin": "https://127.0.0.1:{port}"}, 403, "origin: "),  # other scheme
        ({"origin": "null"}, 403, "origin: 'null'"),  # sandboxed iframe, file://
        # "simple" requests a page may send without a CORS preflight
        ({"content-type": "text/plain"}, 415, "content-type: expected application/json"),
        ({"content-type": "application/x-www-form-urlencoded"}, 415, "content-type: expected"),
        ({"content-type": None}, 415, "content-type: expected application/json for a POST"),
    ],
    ids=[
        "host",
        "origin",
        "origin-port",
        "origin-scheme",
        "origin-null",
        "text-plain",
        "form",
        "no-content-type",
    ],
)
@pytest.mark.parametrize("route", ["/v1/advantage", "/v1/loss"])
def test_cross_site_writes_are_refused(
    http: httpx.Client, rest_demo_server, route: str, headers: dict, status: int, message: str
) -> None:
    port = rest_demo_server.rest_port
    sent = {**JSON, **{k: v.format(port=port) for k, v in headers.items() if v is not None}}
    request = http.build_request("POST", route, content=b"{}", headers=sent)
    if headers.get("content-type", "") is None:
        del request.headers["content-type"]
    response = http.send(request)
    assert response.status_code == status, response.text
    assert response.json()["code"] == ("PERMISSION_DENIED" if status == 403 else "INVALID_ARGUMENT")
    assert response.json()["message"].startswith(message), response.json()["message"]


@pytest.mark.parametrize(
    "headers",
    [
        {},  # curl, the Python client: no Origin
        {"origin": "http://127.0.0.1:{port}"},  # the /debug page and /docs, same origin
        {"host": "localhost:{port}", "origin": "http://localhost:{port}"},
        {"host": "[::1]:{port}"},
        {"content-type": "application/json; charset=utf-8"},
        {"content-type": "Application/JSON"},
    ],
    ids=["no-origin", "same-origin", "localhost", "ipv6-loopback", "charset", "case"],
)
def test_same_origin_json_writes_are_served(http: httpx.Client, rest_demo_server, headers) -> None:
    port = rest_demo_server.rest_port
    sent = {**JSON, **{k: v.format(port=port) for k, v in headers.items()}}
    response = http.post("/v1/advantage", json=sample(http), headers=sent)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("path", ["/v1/models", "/debug/sample", "/debug", "/docs"])
def test_a_foreign_host_is_refused_on_reads_too(http: httpx.Client, path: str) -> None:
    """A rebinding page could read the answers; Host is checked on every route but probes."""
    response = http.get(path, headers={"host": "evil.example"})
    assert response.status_code == 403
    assert response.json()["code"] == "PERMISSION_DENIED"


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics"])
def test_probes_answer_any_host(http: httpx.Client, path: str) -> None:
    """kubelet probes with the pod IP as Host; Prometheus scrapes by address."""
    response = http.get(path, headers={"host": "10.42.0.17:8080"})
    assert response.status_code == 200, response.text


def _app(**options) -> object:
    model = demo_model(torch.device("cpu"))
    runtime = Runtime(ModelRegistry({"demo": model}))
    options = RestOptions(max_body_bytes=1 << 20, **options)
    return create_app(runtime, ThreadPoolExecutor(1), Metrics([model]), options)


def _statuses(app: object, requests: list[tuple[str, str, dict]]) -> list[int]:
    async def send() -> list[int]:
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport) as client:
            return [
                (await client.request(method, url, headers=headers)).status_code
                for method, url, headers in requests
            ]

    return asyncio.run(send())


def test_allow_list_default_is_bind_host_and_loopback() -> None:
    app = _app(bind_host="10.1.2.3")
    assert _statuses(
        app,
        [
            ("GET", "http://10.1.2.3:8080/v1/models", {}),
            ("GET", "http://localhost:8080/v1/models", {}),
            ("GET", "http://127.0.0.1/v1/models", {}),
            ("GET", "http://[::1]:8080/v1/models", {}),
            ("GET", "http://10.9.9.9:8080/v1/models", {}),
            ("GET", "http://LOCALHOST.:8080/v1/models", {}),
        ],
    ) == [200, 200, 200, 200, 403, 200]


def test_allow_list_setting_replaces_the_default_and_star_allows_any_host() -> None:
    app = _app(allowed_hosts=["advantage.internal"], bind_host="127.0.0.1")
    assert _statuses(
        app,
        [
            ("GET", "http://advantage.internal:8080/v1/models", {}),
            ("GET", "http://127.0.0.1:8080/v1/models", {}),
            ("GET", "http://127.0.0.1:8080/healthz", {}),
        ],
    ) == [200, 403, 200]
    anywhere = _app(allowed_hosts=["*"])
    foreign = {"origin": "http://evil.example"}
    assert _statuses(
        anywhere,
        [
            ("GET", "http://whatever.example/v1/models", {}),
            # "*" lifts the Host check only: an Origin must still be the request's own
            ("GET", "http://whatever.example/v1/models", foreign),
            ("GET", "http://whatever.example/v1/models", {"origin": "http://whatever.example"}),
        ],
    ) == [200, 403, 200]


def test_rest_allowed_hosts_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().rest_allowed_hosts is None
    flags = ["serve", "--rest-allowed-hosts", "Advantage.internal, 10.0.0.7,[::1]"]
    assert build_settings(flags).rest_allowed_hosts == ["advantage.internal", "10.0.0.7", "::1"]
    monkeypatch.setenv("ADVANTAGE_REST_ALLOWED_HOSTS", '["a.example", "*"]')
    assert Settings().rest_allowed_hosts == ["a.example", "*"]
    monkeypatch.setenv("ADVANTAGE_REST_ALLOWED_HOSTS", "")
    assert Settings().rest_allowed_hosts is None
    for bad in ("example.com:8080", "http://example.com", ","):
        monkeypatch.setenv("ADVANTAGE_REST_ALLOWED_HOSTS", bad)
        with pytest.raises(ValueError, match="rest_allowed_hosts"):
            Settings()


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("localhost:8080", ("localhost", 8080)),
        ("Example.COM", ("example.com", None)),
        ("[::1]:80", ("::1", 80)),
        ("[::1]", ("::1", None)),
        ("127.0.0.1", ("127.0.0.1", None)),
    ],
)
def test_split_host(header: str, expected: tuple) -> None:
    assert split_host(header) == expected


@pytest.mark.parametrize("header", ["", "::1", "a:b", "a:99999", "[::1", "a/b", "a@b:80", "[::1]x"])
def test_split_host_refuses_malformed(header: str) -> None:
    with pytest.raises(ValueError):
        split_host(header)
