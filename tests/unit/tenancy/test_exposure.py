"""Issue 12: with auth off, Blaze refuses to start on a non-loopback host unless
``auth.allow_unauthenticated`` is set, and then warns at every start; the embedded quickstart
(loopback, no key) starts as before."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from typer.testing import CliRunner

from blaze_ai.cli import app
from blaze_ai.config import Settings
from blaze_ai.errors import ConfigError
from blaze_ai.tenancy.service import auth_enabled, build_tenancy, check_exposure


@pytest.fixture(autouse=True)
def _no_admin_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BLAZE_ADMIN_KEY", raising=False)


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost", "127.0.0.2"])
def test_loopback_without_auth_starts_as_the_quickstart_does(host: str) -> None:
    settings = Settings(server={"host": host})
    check_exposure(settings)
    assert not auth_enabled(settings) and build_tenancy(settings) is None


@pytest.mark.parametrize("host", ["0.0.0.0", "10.1.2.3", "::", "blaze.example.com"])
def test_a_network_host_without_auth_is_refused(host: str) -> None:
    with pytest.raises(ConfigError, match="allow_unauthenticated"):
        check_exposure(Settings(server={"host": host}))


def test_allowed_unauthenticated_warns_at_every_start(caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings(server={"host": "0.0.0.0"}, auth={"allow_unauthenticated": True})
    with caplog.at_level(logging.WARNING):
        check_exposure(settings)
        check_exposure(settings)
    assert [r.getMessage() for r in caplog.records] == ["auth_disabled_on_network"] * 2


def test_an_admin_key_turns_auth_on(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("BLAZE_ADMIN_KEY", "a-long-enough-admin-key")
    settings = Settings(
        server={"host": "0.0.0.0"}, auth={"database_url": f"sqlite:///{tmp_path / 'k.db'}"}
    )
    assert auth_enabled(settings)
    check_exposure(settings)
    assert build_tenancy(settings) is not None
    monkeypatch.setenv("BLAZE_ADMIN_KEY", "short")
    with pytest.raises(ConfigError, match="at least 16"):
        build_tenancy(settings)


def test_blaze_serve_refuses_before_loading_anything() -> None:
    result = CliRunner().invoke(app, ["serve", "--host", "0.0.0.0", "--port", "1"])
    assert result.exit_code == 2
    assert "allow_unauthenticated" in result.output
