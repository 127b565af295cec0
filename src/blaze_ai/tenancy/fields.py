"""Validation of the values the key store writes: names, model lists, limits, expiry, metadata.

Each check takes the field name (for the error's ``param``) and the value, and returns the value
as stored, or raises :class:`~blaze_ai.errors.InvalidRequestError` naming the field.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from typing import Any

from blaze_ai.errors import InvalidRequestError
from blaze_ai.tenancy.types import Limits

TEAM_NAME_MAX = 128
KEY_NAME_MAX = 256
MODEL_PATTERN_MAX = 256
MODELS_MAX = 256
METADATA_MAX_BYTES = 16 * 1024
INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1

Check = Callable[[str, Any], Any]


def text(field: str, value: Any, max_chars: int) -> str:
    """A name: 1 to ``max_chars`` printable characters (no control characters, no newline),
    without leading or trailing spaces."""
    if not isinstance(value, str) or not 1 <= len(value) <= max_chars:
        raise InvalidRequestError(f"{field} must be 1 to {max_chars} characters", param=field)
    if not value.isprintable() or value != value.strip():
        raise InvalidRequestError(
            f"{field} must be printable, without control characters or outer spaces", param=field
        )
    return value


def team_name(field: str, value: Any) -> str:
    """A team name (at most :data:`TEAM_NAME_MAX` characters, no ``/``: it is a path segment
    of ``/admin/teams/{name}``)."""
    name = text(field, value, TEAM_NAME_MAX)
    if "/" in name:
        raise InvalidRequestError(f"{field} must not contain '/'", param=field)
    return name


def key_name(field: str, value: Any) -> str:
    """A key's name (at most :data:`KEY_NAME_MAX` characters)."""
    return text(field, value, KEY_NAME_MAX)


def models(field: str, value: Any) -> list[str]:
    """A list of model names or ``fnmatch`` globs (empty: every model); a bare string is
    refused (it is not a list of one)."""
    if isinstance(value, str | bytes) or not isinstance(value, list | tuple):
        raise InvalidRequestError(f"{field} must be a list of model names", param=field)
    if len(value) > MODELS_MAX:
        raise InvalidRequestError(f"{field} holds more than {MODELS_MAX} names", param=field)
    return [text(f"{field}[{i}]", name, MODEL_PATTERN_MAX) for i, name in enumerate(value)]


def _limit(field: str, value: Any, most: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= most:
        raise InvalidRequestError(f"{field} must be an integer >= 1, or null", param=field)
    return value


def limit32(field: str, value: Any) -> int | None:
    """``rpm`` or ``max_parallel``: an integer from 1 to 2**31-1, or None (unlimited)."""
    return _limit(field, value, INT32_MAX)


def limit64(field: str, value: Any) -> int | None:
    """``tpm``: an integer from 1 to 2**63-1, or None (unlimited)."""
    return _limit(field, value, INT64_MAX)


def limits(value: Limits) -> Limits:
    """Every field of a :class:`Limits` checked."""
    limit32("rpm", value.rpm)
    limit64("tpm", value.tpm)
    limit32("max_parallel", value.max_parallel)
    return value


def expiry(field: str, value: Any) -> float | None:
    """Unix seconds (a finite number), or None (never expires)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidRequestError(f"{field} must be Unix seconds, or null", param=field)
    return float(value)


def flag(field: str, value: Any) -> bool:
    """A boolean (not 0/1)."""
    if not isinstance(value, bool):
        raise InvalidRequestError(f"{field} must be true or false", param=field)
    return value


def metadata(field: str, value: Any) -> dict[str, Any]:
    """A JSON object of at most :data:`METADATA_MAX_BYTES` bytes (None: empty)."""
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise InvalidRequestError(f"{field} must be a JSON object", param=field)
    try:
        encoded = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        raise InvalidRequestError(f"{field} must hold only JSON values", param=field) from None
    if len(encoded.encode()) > METADATA_MAX_BYTES:
        raise InvalidRequestError(
            f"{field} is larger than {METADATA_MAX_BYTES} bytes as JSON", param=field
        )
    result: dict[str, Any] = json.loads(encoded)
    return result


KEY_CHANGES: Mapping[str, Check] = {
    "name": key_name,
    "models": models,
    "rpm": limit32,
    "tpm": limit64,
    "max_parallel": limit32,
    "expires_at": expiry,
    "disabled": flag,
    "metadata": metadata,
}
"""The fields :meth:`KeyStore.update_key` may change, and their checks."""

TEAM_CHANGES: Mapping[str, Check] = {
    "rpm": limit32,
    "tpm": limit64,
    "max_parallel": limit32,
    "disabled": flag,
    "metadata": metadata,
}
"""The fields :meth:`KeyStore.update_team` may change, and their checks."""


def changes(allowed: Mapping[str, Check], given: Mapping[str, Any]) -> dict[str, Any]:
    """``given`` checked field by field: the column values to write.

    Raises:
        InvalidRequestError: a field is not in ``allowed`` (``param`` names it), or its value
            is invalid.
    """
    checked: dict[str, Any] = {}
    for name, value in given.items():
        check = allowed.get(name)
        if check is None:
            raise InvalidRequestError(
                f"unknown field {str(name)[:64]!r}; one of: {', '.join(allowed)}",
                param=str(name)[:64],
            )
        checked[name] = check(name, value)
    return checked
