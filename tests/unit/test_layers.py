"""Keep the layers honest: api never imports engines, engines never import api or gateway, and
the LLM and diffusion engines never import each other; observability (metrics, traces) is read
by every layer and imports none of them.

The API talks to the cache only through the gateway (it builds the request, including the
canonical ``extra_params`` key material; the gateway resolves the model and keys it). The cache
knows neither HTTP, nor routing, nor engines.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "blaze_ai"

FORBIDDEN = {
    "api": ("blaze_ai.engines", "blaze_ai.cache"),
    "engines": ("blaze_ai.api", "blaze_ai.gateway"),
    "engines/llm": ("blaze_ai.engines.diffusion",),
    "engines/diffusion": ("blaze_ai.engines.llm",),
    "gateway": ("blaze_ai.api",),
    "config": ("blaze_ai.api", "blaze_ai.gateway", "blaze_ai.engines"),
    "resilience": ("blaze_ai.api", "blaze_ai.gateway", "blaze_ai.engines"),
    "cache": ("blaze_ai.api", "blaze_ai.gateway", "blaze_ai.engines"),
    "server": ("blaze_ai.api", "blaze_ai.gateway", "blaze_ai.engines", "blaze_ai.cache"),
    "tenancy": ("blaze_ai.api", "blaze_ai.gateway", "blaze_ai.engines", "blaze_ai.cache"),
    "observability": ("blaze_ai.api", "blaze_ai.gateway", "blaze_ai.engines", "blaze_ai.cache"),
}
ALLOWED = {
    ("gateway", "blaze_ai.engines.base"),  # the gateway sees only the engine protocols
    ("api", "blaze_ai.cache.stats"),  # /admin/cache documents its figures with their dataclass
}


def imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports(layer: str) -> None:
    bad = []
    for path in (PACKAGE / layer).rglob("*.py"):
        for name in imports(path):
            if (layer, name) in ALLOWED:
                continue
            if any(name == f or name.startswith(f + ".") for f in FORBIDDEN[layer]):
                bad.append(f"{path.relative_to(PACKAGE)} imports {name}")
    assert not bad
