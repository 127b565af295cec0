"""``docs/dashboard.png``, the README's picture of the dashboard, with a minute of mixed traffic
on its charts: rewritten only when ``BLAZE_UPDATE_DOCS_SCREENSHOT=1``::

    BLAZE_UPDATE_DOCS_SCREENSHOT=1 pytest tests/browser

It runs after ``test_dashboard.py`` (upstream ``a`` is gone by then, so ``remote/0``'s breaker
shows open).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import shutil
import time

import httpx
import pytest
from playwright.async_api import expect

from tests.browser.conftest import OpenDashboard
from tests.browser.dashboard import ROOT
from tests.browser.stack import Stack

pytestmark = pytest.mark.skipif(
    os.environ.get("BLAZE_UPDATE_DOCS_SCREENSHOT") != "1",
    reason="set BLAZE_UPDATE_DOCS_SCREENSHOT=1 to rewrite docs/dashboard.png",
)

TRAFFIC_S = 75.0
DOCS_SCREENSHOT = ROOT / "docs" / "dashboard.png"
CHAT = "/v1/chat/completions"
PROMPTS = ["Name a colour.", "Say hello.", "Count to five.", "Name a fruit.", "What is 2+2?"]


async def _chat(http: httpx.AsyncClient, deadline: float) -> None:
    """Streamed answers of the embedded model, one after another (tokens/s, TTFT)."""
    for prompt in itertools.cycle(PROMPTS):
        if time.monotonic() > deadline:
            return
        body = {
            "model": "smollm2",
            "stream": True,
            "max_tokens": 16,
            "messages": [{"role": "user", "content": prompt}],
        }
        async with http.stream("POST", CHAT, json=body) as response:
            async for _ in response.aiter_lines():
                pass


async def _remote(http: httpx.AsyncClient, deadline: float) -> None:
    """About 4 requests a second to ``remote``: a third deterministic over a few prompts (cache
    hits), one in ten invalid (a 400: the errors line)."""
    for i in itertools.count():
        if time.monotonic() > deadline:
            return
        body: dict[str, object] = {
            "model": "remote",
            "messages": [{"role": "user", "content": f"question {i}"}],
        }
        if i % 3 == 0:
            body |= {"temperature": 0, "messages": [{"role": "user", "content": PROMPTS[i % 5]}]}
        if i % 10 == 9:
            body["temperature"] = 5  # out of range: refused with 400
        await http.post(CHAT, json=body)
        await asyncio.sleep(0.25)


async def _images(http: httpx.AsyncClient, deadline: float) -> None:
    """A digit every few seconds."""
    for digit in itertools.cycle(range(10)):
        if time.monotonic() > deadline:
            return
        body = {"model": "digits", "prompt": f"a handwritten {digit}", "n": 1}
        await http.post("/v1/images/generations", json={**body, "response_format": "b64_json"})
        await asyncio.sleep(3)


async def test_write_the_docs_screenshot(open_dashboard: OpenDashboard, stack: Stack) -> None:
    tab = await open_dashboard()
    await tab.open_and_wait_for_data()
    page = tab.page
    deadline = time.monotonic() + TRAFFIC_S
    async with stack.async_admin() as http:
        await asyncio.gather(
            _chat(http, deadline), _remote(http, deadline), _images(http, deadline)
        )
    await page.fill("#chat-max-tokens", "40")
    await page.fill("#chat-input", "Write one sentence about the sea.")
    await page.click("#chat-send")
    await expect(page.locator("#chat-log .bubble.assistant")).not_to_have_class(
        re.compile("streaming"), timeout=60_000
    )
    await page.fill("#image-prompt", "a handwritten 7")
    await page.click("#image-generate")
    await expect(page.locator("#image-result")).to_be_visible(timeout=30_000)
    await page.wait_for_timeout(2500)  # one more poll
    shot = await tab.shot("docs-dashboard.png")
    DOCS_SCREENSHOT.parent.mkdir(exist_ok=True)
    shutil.copyfile(shot, DOCS_SCREENSHOT)
    assert tab.errors == []
