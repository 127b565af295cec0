"""Issue 13: the dashboard's page, its static assets and its JSON (``/admin/dashboard``), in
process. The page itself is driven in a browser by ``tests/browser``."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import httpx
import pytest
import structlog

from blaze_ai.api.routes.monitoring import DASHBOARD, DASHBOARD_ASSETS

MESSAGES = [{"role": "user", "content": "hi"}]
LINKS = re.compile(r'(?:src|href)="(dashboard/assets/[^"]+)"')
HTML_SINKS = re.compile(
    r"\.(?:inner|outer)HTML\s*\+?=|insertAdjacentHTML|document\.write|DOMParser"
)
IMPORTS = re.compile(r'^import .* from "\./([^"]+)";$', re.MULTILINE)


async def test_the_page_links_only_assets_that_are_served(http: httpx.AsyncClient) -> None:
    page = await http.get("/dashboard")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.headers["cache-control"] == "no-cache"
    # review of issue 13: its own files only, never framed (the browser tests see no violation)
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    links = LINKS.findall(page.text)
    assert "dashboard/assets/main.js" in links
    assert "dashboard/assets/vendor/uPlot.iife.min.js" in links
    for link in links:
        asset = await http.get(f"/{link}")
        assert asset.status_code == 200, link
    script = await http.get("/dashboard/assets/main.js")
    assert "javascript" in script.headers["content-type"]  # a module needs a JS type
    # cached, but revalidated: an upgraded page never runs the previous Blaze's scripts
    assert script.headers["cache-control"] == "no-cache"
    etag = {"If-None-Match": script.headers["etag"]}
    same = await http.get("/dashboard/assets/main.js", headers=etag)
    assert same.status_code == 304 and same.headers["cache-control"] == "no-cache"
    assert (await http.get("/dashboard/assets/nothing.js")).status_code == 404


def test_every_module_import_names_a_module_of_the_folder() -> None:
    modules = sorted(DASHBOARD_ASSETS.glob("*.js"))
    assert modules
    for module in modules:
        for name in IMPORTS.findall(module.read_text()):
            assert (DASHBOARD_ASSETS / name).is_file(), f"{module.name} imports {name}"


def test_the_page_parses_no_string_as_html() -> None:
    """Every string reaches the DOM as text (``textContent``, attributes): no script of the page
    hands one to the HTML parser."""
    scripts = sorted(DASHBOARD_ASSETS.glob("*.js"))
    assert scripts and (DASHBOARD / "index.html").is_file()
    for script in scripts:
        assert not HTML_SINKS.search(script.read_text()), script.name


def test_the_vendored_chart_library_names_its_version_and_licence() -> None:
    vendor = DASHBOARD_ASSETS / "vendor"
    assert (
        (vendor / "uPlot.iife.min.js")
        .read_text()
        .startswith("/*! https://github.com/leeoniya/uPlot (v1.6.32) */")
    )
    assert "MIT License" in (vendor / "uPlot.LICENSE").read_text()
    assert "uplot@1.6.32" in (vendor / "README.md").read_text()


async def _points(http: httpx.AsyncClient, since: float | None = None) -> dict[str, Any]:
    query = "" if since is None else f"?since={since}"
    response = await http.get(f"/admin/dashboard{query}")
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


async def test_the_data_holds_models_deployments_cache_and_new_points(
    http: httpx.AsyncClient,
) -> None:
    chat = {"model": "tiny", "messages": MESSAGES, "max_tokens": 2}
    assert (await http.post("/v1/chat/completions", json=chat)).status_code == 200
    deadline = time.monotonic() + 10
    while True:  # a point holding the request (one comes every interval_s)
        data = await _points(http)
        points = data["points"]
        assert isinstance(points, list)
        if points and any(p["requests_per_s"] > 0 for p in points):
            break
        assert time.monotonic() < deadline, data
        await asyncio.sleep(0.1)
    assert data["auth"] is False
    assert data["interval_s"] == 2.0 and data["window_s"] == 900.0
    assert {"name": "tiny", "aliases": ["default"], "kind": "text"} in data["models"]
    assert {"name": "digits", "aliases": [], "kind": "images"} in data["models"]
    tiny = next(d for d in data["deployments"] if d["name"] == "tiny/0")
    assert tiny["engine"] == "llm" and tiny["breaker_state"] == "closed"
    assert tiny["latency_p50_ms"] > 0 and tiny["latency_p99_ms"] >= tiny["latency_p50_ms"]
    assert data["cache"]["enabled"] is True
    assert set(points[-1]) >= {"t", "requests_per_s", "latency_p50_s", "cache_hit_ratio"}
    newer = await _points(http, since=points[-1]["t"])
    assert all(p["t"] > points[-1]["t"] for p in newer["points"])


async def test_the_poll_is_logged_at_debug_unless_it_fails(http: httpx.AsyncClient) -> None:
    """An open dashboard polls every 2 s: like /metrics, its successful calls stay out of the
    info access log."""
    with structlog.testing.capture_logs() as logs:
        await http.get("/admin/dashboard")
        await http.get("/admin/dashboard?since=soon")
    lines = [(e["path"], e["status"], e["log_level"]) for e in logs if e["event"] == "request"]
    assert lines == [("/admin/dashboard", 200, "debug"), ("/admin/dashboard", 400, "info")]


@pytest.mark.parametrize("since", ["soon", "nan", "inf"])
async def test_a_since_that_is_not_a_time_is_refused(http: httpx.AsyncClient, since: str) -> None:
    refused = await http.get(f"/admin/dashboard?since={since}")
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "query.since"
