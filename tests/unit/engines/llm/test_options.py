"""Memory and speed options: int8 dynamic quantization, bitsandbytes, torch.compile."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from blaze_ai.config.schema import LLMDeploymentConfig
from blaze_ai.engines.llm.engine import TransformersLLMEngine
from blaze_ai.engines.llm.loader import load_causal_lm
from blaze_ai.engines.llm.options import check_quantization
from blaze_ai.errors import ConfigError
from blaze_ai.resilience.deadline import Deadline
from blaze_ai.types import CompletionRequest, SamplingParams

CPU = torch.device("cpu")


async def test_int8_quantizes_linear_layers_and_serves(
    tiny_llama_dir: Path, tmp_path: Path
) -> None:
    engine = TransformersLLMEngine(
        "tiny/int8",
        LLMDeploymentConfig(model=str(tiny_llama_dir), quantization="int8"),
        cache_dir=tmp_path,
    )
    await engine.start()
    try:
        model = engine._loaded.model  # type: ignore[union-attr]
        assert type(model.lm_head).__module__.startswith("torch.ao.nn.quantized.dynamic")
        req = CompletionRequest("tiny", "Hello", SamplingParams(temperature=0, max_tokens=6))
        result = await engine.generate(req, Deadline.after(30))
        assert result.usage.completion_tokens == 6
    finally:
        await engine.stop()


def test_int8_needs_cpu_and_float32() -> None:
    check_quantization("int8", CPU, torch.float32)
    with pytest.raises(ConfigError, match="float32"):
        check_quantization("int8", CPU, torch.bfloat16)
    with pytest.raises(ConfigError, match="CPU only"):
        check_quantization("int8", torch.device("cuda"), torch.float16)


@pytest.mark.parametrize("method", ["bnb-8bit", "bnb-4bit"])
def test_bitsandbytes_without_cuda_is_a_clear_error(method: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=f"{method} needs a CUDA device"):
        check_quantization(method, CPU, torch.float32)
    if not torch.cuda.is_available():
        config = LLMDeploymentConfig(model=str(tmp_path), quantization=method)  # type: ignore[arg-type]
        with pytest.raises(ConfigError, match="on CPU use quantization int8"):
            load_causal_lm(config, tmp_path)


def test_compile_wraps_the_forward_pass(tiny_llama_dir: Path, tmp_path: Path) -> None:
    loaded = load_causal_lm(LLMDeploymentConfig(model=str(tiny_llama_dir), compile=True), tmp_path)
    assert loaded.model._compiled_call_impl is not None  # compiled lazily, on the first call
