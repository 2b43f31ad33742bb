"""/debug in real headless Chromium: load a sample, compute, check the plotted chart."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import httpx
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import Select, WebDriverWait

from service.api.rest.sample import episode_ends

STEPS = 20
SERIES = ("reward", "state_value", "advantage", "value_target")


def test_debug_page_plots_the_sample(browser, browser_server) -> None:
    wait = WebDriverWait(browser, 20)
    browser.get(f"{browser_server.url}/debug")
    # the model list comes from GET /v1/models
    wait.until(lambda d: len(Select(d.find_element(By.ID, "model")).options) == 2)

    steps = browser.find_element(By.ID, "steps")
    steps.clear()
    steps.send_keys(str(STEPS))
    browser.find_element(By.ID, "load-sample").click()
    wait.until(lambda d: d.execute_script("return document.body.dataset.sampleLoaded"))
    payload = json.loads(browser.find_element(By.ID, "payload").get_attribute("value"))
    assert len(payload["trajectory"]["next.reward"]) == STEPS

    Select(browser.find_element(By.ID, "estimator")).select_by_value("td_lambda")
    browser.find_element(By.ID, "gamma").send_keys("0.9")
    browser.find_element(By.ID, "compute").click()
    wait.until(lambda d: d.execute_script("return document.body.dataset.state") != "computing")
    error = browser.find_element(By.ID, "error")
    assert not error.is_displayed(), error.text
    assert browser.execute_script("return document.body.dataset.state") == "plotted"

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

    # the plotted advantage is the API's for the same body and knobs
    body = {**payload, "estimator": {"name": "td_lambda", "gamma": 0.9, "average_rewards": False}}
    expected = httpx.post(f"{browser_server.url}/v1/advantage", json=body).json()
    plotted = [
        float(p.get_attribute("data-value"))
        for p in chart.find_elements(By.CSS_SELECTOR, "circle.point[data-series='advantage']")
    ]
    assert plotted == expected["advantage"]

    # the page fetched nothing but the server's own URLs (no CDN)
    origin = urlsplit(browser_server.url).netloc
    resources = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
    )
    assert resources and all(urlsplit(url).netloc == origin for url in resources), resources


def test_debug_page_shows_errors(browser, browser_server) -> None:
    browser.get(f"{browser_server.url}/debug")
    payload = browser.find_element(By.ID, "payload")
    payload.send_keys('{"trajectory": {"next.reward": [1, 2], "next.done": [false]}}')
    browser.find_element(By.ID, "compute").click()
    error = WebDriverWait(browser, 20).until(ec.visibility_of_element_located((By.ID, "error")))
    assert "INVALID_ARGUMENT" in error.text and "trajectory.done" in error.text


def test_docs_render_offline(browser, browser_server) -> None:
    """Swagger UI renders from the server's own assets (Chromium has no internet here)."""
    browser.get(f"{browser_server.url}/docs")
    WebDriverWait(browser, 20).until(
        lambda d: d.find_elements(
            By.CSS_SELECTOR, ".opblock-summary-path[data-path='/v1/advantage']"
        )
    )
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
