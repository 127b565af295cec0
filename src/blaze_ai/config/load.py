"""Load :class:`Settings` from an optional YAML file plus ``BLAZE_*`` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from blaze_ai.config.schema import Settings
from blaze_ai.errors import ConfigError


def load_settings(path: Path | None = None, **overrides: Any) -> Settings:
    """Read the YAML file at ``path`` (None: the embedded default) and the environment.

    Args:
        path: a YAML file whose top level is a mapping of :class:`Settings` fields.
        overrides: top-level sections that replace the file's (used by CLI flags).

    Raises:
        ConfigError: the file is missing, is not YAML, or fails validation; the message names
            the offending key (``models.0.deployments.0.dtyp: Extra inputs are not permitted``).
    """
    data: dict[str, Any] = {}
    if path is not None:
        data = _read_yaml(path)
    data.update(overrides)
    try:
        return Settings(**data)
    except ValidationError as exc:
        where = f" in {path}" if path else ""
        raise ConfigError(f"invalid configuration{where}:\n{_format(exc)}") from None


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    return data


def _format(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "(top level)"
        lines.append(f"  {where}: {error['msg']}")
    return "\n".join(lines)
