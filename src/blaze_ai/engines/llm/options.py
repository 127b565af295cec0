"""Memory and speed options of a loaded causal LM: quantization and ``torch.compile``.

- ``int8``: dynamic int8 quantization of every ``nn.Linear`` with
  :func:`torch.ao.quantization.quantize_dynamic` (weights stored in int8, activations quantized
  per batch at run time; CPU only). ``torchao``'s int8 configs were measured 4-7x *slower* than
  float32 on this project's CPU with torch 2.13 (no fast CPU kernels for them), while
  ``quantize_dynamic`` ran about 2x faster than float32 — so Blaze uses ``torch.ao`` despite its
  deprecation warning (README, "Performance").
- ``bnb-8bit`` / ``bnb-4bit``: bitsandbytes through ``transformers``' ``BitsAndBytesConfig`` at
  load time; needs CUDA and the ``bitsandbytes`` package.
- ``compile``: :meth:`torch.nn.Module.compile` with dynamic shapes (batch size and length change
  at every step); the first calls are slow while it compiles. Meant for CUDA: on this project's
  CPU it made the embedded model about 12x slower (recompilations as shapes change), and
  compiling only the MLPs gained nothing.
"""

from __future__ import annotations

import importlib.util
import logging
import warnings
from typing import Any

import torch

from blaze_ai.errors import ConfigError

logger = logging.getLogger(__name__)

BNB_METHODS = frozenset({"bnb-8bit", "bnb-4bit"})


def check_quantization(method: str, device: torch.device, dtype: torch.dtype) -> None:
    """Refuse a quantization method this device or dtype cannot run.

    Raises:
        ConfigError: ``int8`` off CPU or with a dtype other than float32; ``bnb-*`` without CUDA
            or without the ``bitsandbytes`` package.
    """
    if method == "int8":
        if device.type != "cpu":
            raise ConfigError(
                "quantization int8 (torch.ao dynamic quantization) runs on CPU only; "
                "on CUDA use bnb-8bit or bnb-4bit"
            )
        if dtype is not torch.float32:
            raise ConfigError("quantization int8 needs dtype float32 (or auto on CPU)")
    elif method in BNB_METHODS:
        if device.type != "cuda":
            raise ConfigError(
                f"quantization {method} needs a CUDA device (bitsandbytes), but the device is "
                f"{device.type}; on CPU use quantization int8"
            )
        if importlib.util.find_spec("bitsandbytes") is None:
            raise ConfigError(
                f"quantization {method} needs the bitsandbytes package: pip install bitsandbytes"
            )


def load_kwargs(method: str) -> dict[str, Any]:
    """Extra ``from_pretrained`` arguments for ``method`` (bitsandbytes quantizes at load)."""
    if method not in BNB_METHODS:
        return {}
    from transformers import BitsAndBytesConfig

    if method == "bnb-8bit":
        return {"quantization_config": BitsAndBytesConfig(load_in_8bit=True)}
    return {
        "quantization_config": BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_compute_dtype=torch.bfloat16, bnb_4bit_quant_type="nf4"
        )
    }


def quantize_int8(model: Any) -> Any:
    """Replace every ``nn.Linear`` of ``model`` by its dynamically quantized int8 version."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", UserWarning)  # quantized tensor creation is deprecated
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


def compile_model(model: Any, device: torch.device) -> None:
    """Compile ``model``'s forward pass in place (dynamic shapes); warns on CPU."""
    if device.type == "cpu":
        logger.warning("compile_on_cpu", extra={"note": "measured much slower than eager on CPU"})
    model.compile(dynamic=True)
