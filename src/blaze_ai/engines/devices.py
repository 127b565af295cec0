"""Device and dtype choice shared by the local engines' loaders (LLM and diffusion).

``auto`` picks CUDA when torch sees it, else the CPU; the dtype follows the device (bfloat16 on
CUDA that supports it, float16 on older CUDA, float32 on the CPU), so the same config runs on
a laptop and on a GPU server.
"""

from __future__ import annotations

import torch

from blaze_ai.errors import ConfigError

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def pick_device(name: str) -> torch.device:
    """``auto`` -> ``cuda`` when available, else ``cpu``; other names are taken as they are.

    Raises:
        ConfigError: CUDA was asked for on a machine without it.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} was configured but CUDA is not available here")
    return torch.device(name)


def pick_dtype(name: str, device: torch.device) -> torch.dtype:
    """``auto`` -> bfloat16 on CUDA that supports it, else float16 on CUDA, float32 elsewhere.

    Raises:
        ConfigError: float16 on a CPU (slow and numerically fragile there).
    """
    if name == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    if name == "float16" and device.type == "cpu":
        raise ConfigError("dtype float16 is not supported on CPU; use float32 or bfloat16")
    return _DTYPES[name]
