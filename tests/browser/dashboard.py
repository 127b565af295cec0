"""One browser tab on the dashboard: the page, what it logged as errors, and screenshots."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from playwright.async_api import ConsoleMessage, Error, Page

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "build" / "test-artifacts" / "browser"
"""Where the screenshots (and the server's log) of the browser tests go."""

KEY_ITEM = "blaze.adminKey"
"""The sessionStorage item that holds the admin key (``assets/api.js``)."""


@dataclass
class Dashboard:
    """A tab showing the dashboard at ``url``; ``errors`` collects its console errors and
    uncaught exceptions from the moment it was opened."""

    page: Page
    url: str
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.page.on("console", self._console)
        self.page.on("pageerror", self._page_error)

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(f"console: {message.text} ({message.location.get('url', '')})")

    def _page_error(self, error: Error) -> None:
        self.errors.append(f"pageerror: {error}")

    async def open(self) -> None:
        """Load the page (a 200) and wait until its scripts have run."""
        response = await self.page.goto(self.url)
        assert response is not None and response.status == 200
        await self.page.wait_for_load_state("load")

    async def open_and_wait_for_data(self) -> None:
        """Load the page and wait until the first poll has filled the deployments table."""
        await self.open()
        await self.page.locator("#deployments tbody tr[data-deployment]").first.wait_for()

    def row(self, deployment: str) -> str:
        """The selector of ``deployment``'s row in the deployments table."""
        return f"#deployments tbody tr[data-deployment='{deployment}']"

    async def shot(self, name: str) -> Path:
        """A full-page screenshot, saved as ``ARTIFACTS/name``."""
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / name
        await self.page.screenshot(path=str(path), full_page=True)
        return path
