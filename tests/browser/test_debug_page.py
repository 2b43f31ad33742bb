"""/debug in real headless Chromium: it plots a sample on load, the body it sends is the one on
screen (the estimator controls edit it), it says what ran, an error clears the chart, and the
legend is in view."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

import httpx
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import Select, WebDriverWait

from service.api.rest.sample import episode_ends

DEFAULT_STEPS = 24  # the page's Steps field
STEPS = 20
SERIES = ("reward", "state_value", "advantage", "value_target")
LEGEND = [
    "reward",
    "state value V(s)",
    "advantage",
    "value target",
    "terminated (no bootstrap)",
    "truncated (bootstrapped)",
]
SETTLED = ("plotted", "error")


def state(browser) -> str | None:
    return browser.execute_script("return document.body.dataset.state")


def open_page(browser, server) -> WebDriverWait:
    """Load /debug and wait for the page's own first computation to finish."""
    wait = WebDriverWait(browser, 30)
    browser.get(f"{server.url}/debug")
    wait.until(lambda d: state(d) in SETTLED)
    return wait


def click_and_settle(browser, wait: WebDriverWait, button_id: str) -> str:
    """Click a button that computes; wait until the page has plotted or shown an error."""
    browser.execute_script("document.body.dataset.state = 'clicked'")
    browser.find_element(By.ID, button_id).click()
    wait.until(lambda d: state(d) in SETTLED)
    return state(browser)


def paste(browser, text: str) -> None:
    """Replace the body as a paste does: new text, then an `input` event."""
    browser.execute_script(
        "const box = document.getElementById('payload'); box.value = arguments[0];"
        "box.dispatchEvent(new Event('input', {bubbles: true}));",
        text,
    )


def payload(browser) -> dict[str, Any]:
    return json.loads(browser.find_element(By.ID, "payload").get_attribute("value"))


def plotted(browser, series: str) -> list[float]:
    chart = browser.find_element(By.ID, "chart")
    points = chart.find_elements(By.CSS_SELECTOR, f"circle.point[data-series='{series}']")
    return [float(p.get_attribute("data-value")) for p in points]


def api(server, body: dict[str, Any]) -> dict[str, Any]:
    response = httpx.post(f"{server.url}/v1/advantage", json=body, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


def ran(browser) -> str:
    return browser.find_element(By.ID, "ran").text


def test_page_plots_a_sample_on_load_with_the_legend_in_view(browser, browser_server) -> None:
    browser.set_window_size(1280, 720)  # a laptop screen
    try:
        open_page(browser, browser_server)  # no click: the page computes a sample itself
        assert state(browser) == "plotted"
        error = browser.find_element(By.ID, "error")
        assert not error.is_displayed(), error.text
        body = payload(browser)
        assert body["estimator"] == {"name": "gae"}
        assert len(body["trajectory"]["next.reward"]) == DEFAULT_STEPS
        assert Select(browser.find_element(By.ID, "estimator")).first_selected_option.text == "GAE"
        # what ran, with the knobs the model filled in (the demo's defaults: γ 0.99, λ 0.95)
        assert ran(browser) == (
            "ran gae (gamma 0.99 (model default), lmbda 0.95 (model default))"
        ), ran(browser)
        status = browser.find_element(By.ID, "status").text
        assert "on model demo" in status and f"shape [{DEFAULT_STEPS}] float32" in status

        assert plotted(browser, "advantage") == api(browser_server, body)["advantage"]
        legend = [item.text for item in browser.find_elements(By.CSS_SELECTOR, "#legend span")]
        assert legend == LEGEND
        # the legend and the top of the chart are on screen without scrolling
        box = browser.execute_script(
            "const legend = document.getElementById('legend').getBoundingClientRect();"
            "const chart = document.getElementById('chart').getBoundingClientRect();"
            "return {legendTop: legend.top, legendBottom: legend.bottom,"
            "        chartTop: chart.top, height: window.innerHeight, scrolled: window.scrollY};"
        )
        assert box["scrolled"] == 0
        assert 0 <= box["legendTop"] < box["legendBottom"] <= box["height"], box
        assert box["chartTop"] < box["height"] / 2, box
    finally:
        browser.set_window_size(1280, 1000)


def test_estimator_controls_rewrite_the_body_that_is_sent(browser, browser_server) -> None:
    wait = open_page(browser, browser_server)
    # the model list comes from GET /v1/models
    assert [o.text for o in Select(browser.find_element(By.ID, "model")).options] == [
        "(default model)",
        "demo",
    ]
    steps = browser.find_element(By.ID, "steps")
    steps.clear()
    steps.send_keys(str(STEPS))
    assert click_and_settle(browser, wait, "load-sample") == "plotted"  # one click: new sample
    assert len(payload(browser)["trajectory"]["next.reward"]) == STEPS

    Select(browser.find_element(By.ID, "estimator")).select_by_value("td_lambda")
    browser.find_element(By.ID, "gamma").send_keys("0.9")
    # the controls' choice is in the body on screen before anything is sent
    shown = payload(browser)
    assert shown["estimator"] == {"name": "td_lambda", "gamma": 0.9, "average_rewards": False}
    assert click_and_settle(browser, wait, "compute") == "plotted"
    assert ran(browser) == (
        "ran td_lambda (gamma 0.9, lmbda 0.95 (model default), average_rewards false)"
    )

    chart = browser.find_element(By.ID, "chart")
    for series in SERIES:
        points = chart.find_elements(By.CSS_SELECTOR, f"circle.point[data-series='{series}']")
        assert [int(p.get_attribute("data-t")) for p in points] == list(range(STEPS)), series
    terminal, truncated = episode_ends(STEPS)
    marked = {
        kind: [
            int(m.get_attribute("data-t"))
            for m in chart.find_elements(By.CSS_SELECTOR, f"line.marker.{kind}")
        ]
        for kind in ("terminal", "truncated")
    }
    assert marked == {"terminal": [terminal], "truncated": [truncated]}
    # markers sit at the x of their step's points
    point = chart.find_element(By.CSS_SELECTOR, f"circle.point[data-t='{terminal}']")
    marker = chart.find_element(By.CSS_SELECTOR, "line.marker.terminal")
    assert float(point.get_attribute("cx")) == float(marker.get_attribute("x1"))

    # the plotted advantage is the API's for the body shown, and it is TD(λ)'s, not GAE's
    expected = api(browser_server, shown)["advantage"]
    assert plotted(browser, "advantage") == expected
    as_gae = api(browser_server, {**shown, "estimator": {"name": "gae", "gamma": 0.9}})
    assert as_gae["advantage"] != expected

    # the page fetched nothing but the server's own URLs (no CDN)
    origin = urlsplit(browser_server.url).netloc
    resources = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
    )
    assert resources and all(urlsplit(url).netloc == origin for url in resources), resources


def test_a_pasted_estimator_is_the_one_that_runs(browser, browser_server) -> None:
    wait = open_page(browser, browser_server)
    body = payload(browser)
    body["estimator"] = {"name": "vtrace", "gamma": 0.9, "rho_thresh": 1.5, "c_thresh": 0.8}
    paste(browser, json.dumps(body))
    # the controls follow the pasted body
    assert Select(browser.find_element(By.ID, "estimator")).first_selected_option.text == "V-trace"
    values = {
        name: browser.find_element(By.ID, name).get_attribute("value")
        for name in ("gamma", "lmbda", "rho-thresh", "c-thresh")
    }
    assert values == {"gamma": "0.9", "lmbda": "", "rho-thresh": "1.5", "c-thresh": "0.8"}
    assert click_and_settle(browser, wait, "compute") == "plotted"
    assert ran(browser) == ("ran vtrace (gamma 0.9, rho_thresh 1.5, c_thresh 0.8)"), ran(browser)
    assert payload(browser) == body  # sent as pasted: nothing rewritten
    expected = api(browser_server, body)["advantage"]
    assert plotted(browser, "advantage") == expected
    assert api(browser_server, {**body, "estimator": "gae"})["advantage"] != expected

    # a body without an estimator runs the server's default, and the page says so
    del body["estimator"]
    paste(browser, json.dumps(body))
    assert Select(browser.find_element(By.ID, "estimator")).first_selected_option.text == "GAE"
    assert click_and_settle(browser, wait, "compute") == "plotted"
    assert ran(browser) == (
        "ran gae, the default estimator (gamma 0.99 (model default), lmbda 0.95 (model default))"
    )
    assert payload(browser) == body
    assert plotted(browser, "advantage") == api(browser_server, body)["advantage"]


def test_an_error_clears_the_chart(browser, browser_server) -> None:
    wait = open_page(browser, browser_server)
    chart = browser.find_element(By.ID, "chart")
    assert chart.find_elements(By.CSS_SELECTOR, "circle.point")  # the sample's plot

    paste(browser, '{"trajectory": {"next.reward": [1, 2], "next.done": [false]}}')
    assert click_and_settle(browser, wait, "compute") == "error"
    error = WebDriverWait(browser, 20).until(ec.visibility_of_element_located((By.ID, "error")))
    # the field as the body wrote it
    assert error.text.startswith("400 INVALID_ARGUMENT: trajectory.next.done: "), error.text
    assert chart.find_elements(By.CSS_SELECTOR, "circle.point, line.marker, path") == []
    assert browser.find_elements(By.CSS_SELECTOR, "#legend span") == []
    assert browser.find_element(By.ID, "status").text == ""

    # a good body plots again and hides the error; then a body that is not JSON clears it
    paste(browser, json.dumps(body_of_steps(browser_server, 8)))
    assert click_and_settle(browser, wait, "compute") == "plotted"
    assert not browser.find_element(By.ID, "error").is_displayed()
    assert len(plotted(browser, "advantage")) == 8
    paste(browser, '{"trajectory": ')
    assert click_and_settle(browser, wait, "compute") == "error"
    assert browser.find_element(By.ID, "error").text.startswith("payload: not valid JSON")
    assert chart.find_elements(By.CSS_SELECTOR, "circle.point") == []


def body_of_steps(server, steps: int) -> dict[str, Any]:
    response = httpx.get(f"{server.url}/debug/sample", params={"steps": steps}, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


def test_docs_render_offline(browser, browser_server) -> None:
    """Swagger UI renders from the server's own assets (Chromium has no internet here)."""
    browser.get(f"{browser_server.url}/docs")
    WebDriverWait(browser, 20).until(
        lambda d: d.find_elements(
            By.CSS_SELECTOR, ".opblock-summary-path[data-path='/v1/advantage']"
        )
    )
    # /v1/loss, opened, shows its example body (built from the demo model) in Swagger UI
    browser.find_element(By.CSS_SELECTOR, ".opblock-summary-path[data-path='/v1/loss']").click()
    shown = WebDriverWait(browser, 20).until(
        lambda d: d.execute_script(
            "const path = document.querySelector(\".opblock-summary-path[data-path='/v1/loss']\");"
            "const text = path.closest('.opblock').innerText;"
            "return text.includes('\"ppo_clip\"') ? text : null;"
        )
    )
    assert "PPO (clip) on a generated trajectory for model 'demo'" in shown
    assert '"next.observation"' in shown and '"sample_log_prob"' in shown
    origin = urlsplit(browser_server.url).netloc
    resources = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
    )
    assert all(urlsplit(url).netloc == origin for url in resources), resources


def test_debug_page_plots_one_agent(browser, browser_server) -> None:
    """A body with n_agents: the page plots the chosen agent's series of [*B, T, n]."""
    steps, agents = 6, 3
    observation = [[[0.1 * (t + a), -0.2, 0.3 * a, 0.05 * t] for a in range(agents)]
                   for t in range(steps + 1)]  # fmt: skip
    body = {
        "n_agents": agents,
        "trajectory": {
            "observation": [observation[:steps]],
            "next.observation": [observation[1:]],
            "next.reward": [[[float(t * agents + a) for a in range(agents)] for t in range(steps)]],
            "next.done": [[t == 3 for t in range(steps)]],
        },
    }
    wait = WebDriverWait(browser, 20)
    browser.get(f"{browser_server.url}/debug")
    wait.until(lambda d: len(Select(d.find_element(By.ID, "model")).options) == 2)
    payload = browser.find_element(By.ID, "payload")
    payload.clear()
    browser.execute_script("arguments[0].value = arguments[1]", payload, json.dumps(body))
    agent = browser.find_element(By.ID, "agent")
    agent.clear()
    agent.send_keys("2")
    browser.find_element(By.ID, "compute").click()
    wait.until(lambda d: d.execute_script("return document.body.dataset.state") != "computing")
    error = browser.find_element(By.ID, "error")
    assert not error.is_displayed(), error.text
    chart = browser.find_element(By.ID, "chart")
    rewards = [
        float(p.get_attribute("data-value"))
        for p in chart.find_elements(By.CSS_SELECTOR, "circle.point[data-series='reward']")
    ]
    assert rewards == [float(t * agents + 2) for t in range(steps)]
    expected = httpx.post(
        f"{browser_server.url}/v1/advantage",
        json={**body, "estimator": {"name": "gae", "average_gae": False}},
    ).json()
    plotted = [
        float(p.get_attribute("data-value"))
        for p in chart.find_elements(By.CSS_SELECTOR, "circle.point[data-series='advantage']")
    ]
    assert plotted == [expected["advantage"][0][t][2] for t in range(steps)]
    terminal = chart.find_elements(By.CSS_SELECTOR, "line.marker.terminal")
    assert [int(m.get_attribute("data-t")) for m in terminal] == [3]
