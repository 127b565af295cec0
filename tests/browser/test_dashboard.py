"""Issue 13: the dashboard in a real browser (Debian's chromium through Playwright), against a
real ``blaze serve`` with auth on (``tests/browser/stack.py``).

Each test opens its own tab; screenshots go to ``build/test-artifacts/browser/``. The breaker
test stops upstream ``a`` for good, so it runs last.
"""

from __future__ import annotations

import re
import time

from playwright.async_api import expect

from tests.browser.conftest import OpenDashboard
from tests.browser.dashboard import KEY_ITEM
from tests.browser.stack import ADMIN_KEY, TEAM, Stack

CHAT = "/v1/chat/completions"
BREAKER_OPEN_WITHIN_S = 10.0


async def test_the_page_loads_without_console_errors(open_dashboard: OpenDashboard) -> None:
    tab = await open_dashboard()
    await tab.open_and_wait_for_data()
    page = tab.page
    await expect(page.locator("#charts figure.chart")).to_have_count(5)  # four, and the cache's
    first = await page.locator("#status").text_content()
    # the next poll (?since=) runs too, and changes the status line's time
    await page.wait_for_function(
        "s => document.getElementById('status').textContent !== s", arg=first
    )
    await expect(page.locator("#status")).to_have_attribute("data-state", "ok")
    await expect(page.locator("#key-panel")).to_be_hidden()
    await tab.shot("dashboard-loaded.png")
    assert tab.errors == []


async def test_it_lists_the_models_and_their_deployments(open_dashboard: OpenDashboard) -> None:
    tab = await open_dashboard()
    await tab.open_and_wait_for_data()
    page = tab.page
    expected = [
        ("smollm2/0", "smollm2", "llm"),
        ("digits/0", "digits", "diffusion"),
        ("remote/0", "remote", "remote"),
        ("remote/1", "remote", "remote"),
    ]
    await expect(page.locator("#deployments tbody tr")).to_have_count(len(expected))
    for name, model, engine in expected:
        row = page.locator(tab.row(name))
        await expect(row).to_have_attribute("data-model", model)
        await expect(row).to_have_attribute("data-breaker", "closed")
        await expect(row.locator("td").nth(2)).to_have_text(engine)
        await expect(row.locator("td").nth(3)).to_have_text("ready")
    await expect(page.locator("#chat-model option")).to_have_text(["smollm2", "remote"])
    await expect(page.locator("#image-model option")).to_have_text(["digits"])
    await expect(page.locator("#cache-levels tbody tr[data-level='memory']")).to_be_visible()
    await expect(page.locator("#usage-section")).to_be_visible()
    await expect(page.locator(f"#usage tbody tr[data-team='{TEAM}']")).to_be_visible()
    assert tab.errors == []


async def test_clear_cache_empties_the_levels(open_dashboard: OpenDashboard, stack: Stack) -> None:
    body = {
        "model": "remote",
        "temperature": 0,
        "messages": [{"role": "user", "content": "cache me"}],
    }
    async with stack.async_admin() as http:
        for _ in range(2):  # a store, then a hit
            assert (await http.post(CHAT, json=body)).status_code == 200
    tab = await open_dashboard()
    await tab.open_and_wait_for_data()
    page = tab.page
    entries = page.locator("#cache-levels tbody tr[data-level='memory'] td").nth(1)
    await expect(entries).not_to_have_text("0")
    await page.click("#clear-cache")
    await expect(page.locator("#cache-message")).to_have_text(
        re.compile(r"Cleared [1-9]\d* entries")
    )
    await expect(entries).to_have_text("0")
    assert tab.errors == []


async def test_the_chat_playground_streams_an_answer(open_dashboard: OpenDashboard) -> None:
    tab = await open_dashboard()
    await tab.open_and_wait_for_data()
    page = tab.page
    # Record the answer's length at every change, to see it grow while it streams.
    await page.evaluate(
        """() => {
            window.answerLengths = [];
            const log = document.getElementById("chat-log");
            new MutationObserver(() => {
                const answer = log.querySelector(".bubble.assistant");
                if (answer) window.answerLengths.push(answer.textContent.length);
            }).observe(log, { childList: true, subtree: true, characterData: true });
        }"""
    )
    await page.select_option("#chat-model", "smollm2")
    await page.fill("#chat-max-tokens", "24")
    await page.fill("#chat-input", "Name three colours.")
    await page.click("#chat-send")
    await expect(page.locator("#chat-log .bubble.user")).to_have_text("Name three colours.")
    answer = page.locator("#chat-log .bubble.assistant")
    await expect(answer).not_to_have_class(re.compile("streaming"), timeout=60_000)
    await expect(answer).not_to_have_class(re.compile("error"))
    assert (await answer.text_content() or "").strip()
    await expect(page.locator("#chat-status")).to_contain_text("finish_reason")
    lengths = await page.evaluate("window.answerLengths")
    assert len({n for n in lengths if n > 0}) >= 2, lengths  # it grew, chunk by chunk
    await tab.shot("chat-playground.png")
    # a long answer, stopped once it has started: kept as it is, no error
    await page.fill("#chat-max-tokens", "400")
    await page.fill("#chat-input", "Tell me a long story.")
    await page.click("#chat-send")
    second = page.locator("#chat-log .bubble.assistant").nth(1)
    await expect(second).not_to_have_text("")
    await page.click("#chat-stop")
    await expect(page.locator("#chat-status")).to_contain_text("Stopped after")
    await expect(second).not_to_have_class(re.compile("streaming|error"))
    await expect(page.locator("#chat-send")).to_be_enabled()
    assert tab.errors == []


async def test_the_image_playground_shows_a_digit(open_dashboard: OpenDashboard) -> None:
    tab = await open_dashboard()
    await tab.open_and_wait_for_data()
    page = tab.page
    await page.select_option("#image-model", "digits")
    await page.fill("#image-prompt", "a handwritten 3")
    await page.click("#image-generate")
    image = page.locator("#image-result")
    await expect(image).to_be_visible(timeout=30_000)
    await page.wait_for_function(
        "() => { const i = document.getElementById('image-result');"
        " return i.complete && i.naturalWidth > 0; }"
    )
    assert await image.evaluate("i => i.src.startsWith('data:image/png;base64,')")
    await expect(page.locator("#image-status")).to_contain_text("Generated")
    await tab.shot("image-playground.png")
    assert tab.errors == []


async def test_the_page_asks_for_the_admin_key(open_dashboard: OpenDashboard, stack: Stack) -> None:
    tab = await open_dashboard(with_key=False)
    await tab.open()
    page = tab.page
    await expect(page.locator("#key-panel")).to_be_visible()
    await expect(page.locator("#app")).to_be_hidden()
    await tab.shot("key-form.png")
    # a wrong key (401), then a team's key (403: not the admin key): refused, asked again
    for refused in ("sk-blz-not-a-key", stack.team_key):
        await page.fill("#admin-key", refused)
        await page.click("#key-form button[type=submit]")
        await expect(page.locator("#key-message")).to_contain_text("The key was refused")
        await expect(page.locator("#app")).to_be_hidden()
        assert await page.evaluate(f"sessionStorage.getItem({KEY_ITEM!r})") is None
    await page.fill("#admin-key", ADMIN_KEY)
    await page.click("#key-form button[type=submit]")
    await expect(page.locator("#app")).to_be_visible()
    await expect(page.locator(tab.row("smollm2/0"))).to_be_visible()
    await expect(page.locator(f"#usage tbody tr[data-team='{TEAM}']")).to_be_visible()
    assert await page.evaluate(f"sessionStorage.getItem({KEY_ITEM!r})") == ADMIN_KEY
    assert await page.evaluate("localStorage.length") == 0
    await tab.shot("key-accepted.png")
    # the refused calls' answers are all the browser logged
    assert [e for e in tab.errors if not re.search(r"status of 40[13]", e)] == []


async def test_an_open_breaker_turns_its_row_red(
    open_dashboard: OpenDashboard, stack: Stack
) -> None:
    tab = await open_dashboard()
    await tab.open_and_wait_for_data()
    page = tab.page
    row = page.locator(tab.row("remote/0"))
    await expect(row).to_have_attribute("data-breaker", "closed")
    upstream = stack.upstreams["a"]
    upstream.process.terminate()
    upstream.process.wait()
    started = time.monotonic()
    async with stack.async_admin() as http:
        for i in range(6):  # round robin: every other one tries `a` first, then `b`
            body = {"model": "remote", "messages": [{"role": "user", "content": f"hi {i}"}]}
            assert (await http.post(CHAT, json=body)).status_code == 200
    left_s = BREAKER_OPEN_WITHIN_S - (time.monotonic() - started)
    await expect(row).to_have_attribute("data-breaker", "open", timeout=left_s * 1000)
    await expect(row).to_have_class(re.compile(r"\bbreaker-open\b"))
    background = await row.locator("td").first.evaluate(
        "td => getComputedStyle(td).backgroundColor"
    )
    assert background == "rgb(254, 226, 226)"  # --bad-bg: red
    other = page.locator(tab.row("remote/1"))
    await expect(other).to_have_attribute("data-breaker", "closed")
    await expect(other).not_to_have_class(re.compile("breaker-open"))
    await tab.shot("breaker-open.png")
    assert tab.errors == []
