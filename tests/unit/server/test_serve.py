"""The one uvicorn configuration of ``blaze serve``."""

from __future__ import annotations

from blaze_ai.config.schema import ServerConfig
from blaze_ai.server.protocol import LimitedHttpProtocol
from blaze_ai.server.serve import GRACEFUL_SHUTDOWN_S, uvicorn_config


async def _app(scope: object, receive: object, send: object) -> None:  # never called
    raise AssertionError


def test_the_config_serves_through_the_limited_protocol_with_the_server_limits() -> None:
    server = ServerConfig(host="0.0.0.0", port=9001, max_connections=7, keep_alive_timeout_s=3.5)
    config = uvicorn_config(_app, server)
    config.load()
    protocol = config.http_protocol_class
    assert isinstance(protocol, type) and issubclass(protocol, LimitedHttpProtocol)
    assert protocol.limits is server
    assert (config.host, config.port) == ("0.0.0.0", 9001)
    assert config.ws_protocol_class is None  # no WebSocket upgrades around the limits
    assert config.limit_concurrency is None  # the protocol caps connections itself
    assert config.timeout_graceful_shutdown == GRACEFUL_SHUTDOWN_S
    assert not config.access_log and not config.proxy_headers


def test_each_config_gets_its_own_protocol_class() -> None:
    a = LimitedHttpProtocol.with_limits(ServerConfig(max_connections=1))
    b = LimitedHttpProtocol.with_limits(ServerConfig(max_connections=2))
    assert (a.limits.max_connections, b.limits.max_connections) == (1, 2)
    assert LimitedHttpProtocol.limits == ServerConfig()
