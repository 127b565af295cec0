"""What every configuration model shares."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

BUILTIN_PREFIX = "builtin:"
"""``model: builtin:NAME`` names a model shipped with Blaze or one of its packages."""


class StrictModel(BaseModel):
    """Unknown keys fail (``extra="forbid"``), so a typo stops the start with its name."""

    model_config = ConfigDict(extra="forbid", frozen=True)
