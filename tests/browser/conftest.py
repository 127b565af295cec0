"""Fixtures of the browser tests: the server stack and Debian's chromium, each started once for
this folder, and a fresh browser context (a tab) per test.

Playwright's own browser download cannot run here, so the tests drive the system chromium
(``apt-get install chromium``; ``make test`` installs it) through ``executable_path``. They use
Playwright's async API in the session's event loop (the suite runs pytest-asyncio with one loop
for the session). ``--headed`` and ``--slowmo`` of pytest-playwright still apply.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, BrowserContext, ViewportSize, async_playwright

from tests.browser.dashboard import ARTIFACTS, KEY_ITEM, Dashboard
from tests.browser.stack import ADMIN_KEY, Stack, running_stack

CHROMIUM = Path(os.environ.get("BLAZE_CHROMIUM", "/usr/bin/chromium"))
"""Debian's chromium (``BLAZE_CHROMIUM`` names another build)."""

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # without these, chromium keeps calling home, and on a closed network floods it with
    # refused connections
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT: ViewportSize = {"width": 1400, "height": 1000}

OpenDashboard = Callable[..., Awaitable[Dashboard]]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test of this folder ``browser``."""
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="package")
def stack() -> Iterator[Stack]:
    """The server and its upstreams, for every test of this folder (logs in ARTIFACTS)."""
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    with running_stack(ARTIFACTS / "server") as running:
        yield running


@pytest.fixture(scope="package")
def chromium_path() -> Path:
    """:data:`CHROMIUM`; the tests are skipped when it is not installed."""
    if not CHROMIUM.exists():
        pytest.skip(f"no chromium at {CHROMIUM}: apt-get install chromium (make test does)")
    return CHROMIUM


@pytest.fixture(scope="package")
async def chromium(
    chromium_path: Path, browser_type_launch_args: dict[str, Any]
) -> AsyncIterator[Browser]:
    """Debian's chromium, headless unless ``--headed``."""
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            **browser_type_launch_args, executable_path=str(chromium_path), args=CHROMIUM_ARGS
        )
        yield browser
        await browser.close()


@pytest.fixture
async def open_dashboard(chromium: Browser, stack: Stack) -> AsyncIterator[OpenDashboard]:
    """``await open_dashboard(with_key=True)``: a new tab (its own context, so its own
    sessionStorage) on the dashboard, with the admin key already in sessionStorage unless
    ``with_key`` is false; the page is not loaded yet (``Dashboard.open``)."""
    contexts: list[BrowserContext] = []

    async def new_tab(*, with_key: bool = True) -> Dashboard:
        context = await chromium.new_context(viewport=VIEWPORT)
        contexts.append(context)
        if with_key:
            await context.add_init_script(f"sessionStorage.setItem({KEY_ITEM!r}, {ADMIN_KEY!r});")
        return Dashboard(await context.new_page(), stack.dashboard_url)

    yield new_tab
    for context in contexts:
        await context.close()
