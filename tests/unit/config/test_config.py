"""Configuration: YAML, BLAZE_* overrides, and clear errors for typos."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from blaze_ai.config import load_settings
from blaze_ai.config.schema import DiffusionDeploymentConfig, LLMDeploymentConfig
from blaze_ai.errors import ConfigError


def test_default_is_the_embedded_model(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings(None)
    assert [m.name for m in settings.models] == ["smollm2", "digits"]
    assert settings.models[0].aliases == ["default"]
    assert settings.models[0].deployments[0].model == "builtin:smollm2-135m-instruct"
    digits = settings.models[1].deployments[0]
    assert isinstance(digits, DiffusionDeploymentConfig) and digits.model == "builtin:digits"
    assert settings.server.port == 8000


def test_diffusion_deployment_with_memory_options(tmp_path: Path) -> None:
    path = tmp_path / "blaze.yaml"
    path.write_text(
        "models:\n"
        "  - name: sd\n"
        "    deployments:\n"
        "      - engine: diffusion\n"
        "        model: /models/sd15\n"
        "        scheduler: euler\n"
        "        attention_slicing: true\n"
        "        vae_slicing: true\n"
        "        vae_tiling: true\n"
        "  - name: chat\n"
        "    deployments: [{model: /models/chat}]\n"
    )
    sd, chat = (m.deployments[0] for m in load_settings(path).models)
    assert isinstance(sd, DiffusionDeploymentConfig)
    assert (sd.scheduler, sd.attention_slicing, sd.vae_slicing, sd.vae_tiling) == (
        "euler",
        True,
        True,
        True,
    )
    assert isinstance(chat, LLMDeploymentConfig)  # no engine key: an LLM, as before


@pytest.mark.skipif(torch.cuda.is_available(), reason="cpu_offload is valid with CUDA")
@pytest.mark.parametrize("mode", ["model", "sequential"])
def test_cpu_offload_without_accelerator_is_refused_at_load(tmp_path: Path, mode: str) -> None:
    path = tmp_path / "blaze.yaml"
    path.write_text(
        f"models: [{{name: sd, deployments: [{{engine: diffusion, model: x, cpu_offload: {mode}}}]}}]\n"
    )
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert "cpu_offload" in info.value.message and "accelerator" in info.value.message


def test_cpu_offload_on_an_explicit_cpu_device_is_refused() -> None:
    with pytest.raises(ValueError, match=r"cpu_offload.*device is cpu"):
        DiffusionDeploymentConfig(engine="diffusion", model="x", device="cpu", cpu_offload="model")


def test_yaml_file_and_env_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "blaze.yaml"
    path.write_text(
        "server: {port: 9001, log_format: json}\n"
        "runtime: {torch_threads: 2}\n"
        "models:\n"
        "  - name: a\n"
        "    deployments: [{model: /models/a, dtype: bfloat16, replicas: 2}]\n"
    )
    settings = load_settings(path)
    assert settings.server.port == 9001
    assert settings.models[0].deployments[0].replicas == 2
    monkeypatch.setenv("BLAZE_SERVER__PORT", "9100")
    monkeypatch.setenv("BLAZE_RUNTIME__TORCH_THREADS", "1")
    settings = load_settings(path)
    assert settings.server.port == 9100
    assert settings.server.log_format == "json"  # the file still applies where env is silent
    assert settings.runtime.torch_threads == 1


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("server: {prot: 1}\n", "server.prot"),
        ("models: [{name: a, deployments: [{model: x, dtyp: float32}]}]\n", "dtyp"),
        ("models: [{name: a, deployments: [{model: x, dtype: float8}]}]\n", "dtype"),
        ("models: [{name: a, deployments: []}]\n", "deployments"),
        (
            "models: [{name: a, deployments: [{model: x}]},"
            " {name: a, deployments: [{model: y}]}]\n",
            "used twice",
        ),
        ("models: [{name: a, deployments: [{model: x, device: gpu7}]}]\n", "device"),
        ("- just\n- a list\n", "mapping"),
        ("server: {port: [\n", "not valid YAML"),
        (
            "models: [{name: a, deployments: [{engine: gan, model: x}]}]\n",
            "llm, remote or diffusion",
        ),
        (
            "models: [{name: a, deployments: [{engine: diffusion, model: x, vae_slcing: true}]}]\n",
            "vae_slcing",
        ),
        (
            "models: [{name: a, deployments: [{engine: diffusion, model: x, scheduler: fast}]}]\n",
            "scheduler",
        ),
        (
            "models: [{name: a, deployments: [{engine: diffusion, model: x}, {model: y}]}]\n",
            "cannot mix image and text",
        ),
    ],
)
def test_invalid_config_fails_with_a_message_naming_the_key(
    tmp_path: Path, text: str, needle: str
) -> None:
    path = tmp_path / "blaze.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert needle in info.value.message


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(tmp_path / "absent.yaml")


def test_batching_and_quantization_keys(tmp_path: Path) -> None:
    path = tmp_path / "blaze.yaml"
    path.write_text(
        "models:\n"
        "  - name: a\n"
        "    deployments: [{model: /m, max_batch_size: 32, max_queue: 8, quantization: int8,"
        " compile: true}]\n"
    )
    deployment = load_settings(path).models[0].deployments[0]
    assert (deployment.max_batch_size, deployment.max_queue) == (32, 8)
    assert (deployment.quantization, deployment.compile) == ("int8", True)
    path.write_text("models:\n  - name: a\n    deployments: [{model: /m, quantization: int4}]\n")
    with pytest.raises(ConfigError, match="quantization"):
        load_settings(path)
    path.write_text("models:\n  - name: a\n    deployments: [{model: /m, max_batch: 4}]\n")
    with pytest.raises(ConfigError, match="max_batch"):
        load_settings(path)


def test_prefix_cache_max_bytes_is_in_bytes(tmp_path: Path) -> None:
    assert LLMDeploymentConfig(model="/m").prefix_cache_max_bytes == 256 * 2**20
    path = tmp_path / "blaze.yaml"
    path.write_text("models: [{name: a, deployments: [{model: /m, prefix_cache_max_bytes: 0}]}]\n")
    assert load_settings(path).models[0].deployments[0].prefix_cache_max_bytes == 0


def test_the_old_prefix_cache_mb_key_converts_with_a_deprecation_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "blaze.yaml"
    path.write_text("models: [{name: a, deployments: [{model: /m, prefix_cache_mb: 64}]}]\n")
    with pytest.warns(DeprecationWarning, match="prefix_cache_max_bytes"):
        deployment = load_settings(path).models[0].deployments[0]
    assert isinstance(deployment, LLMDeploymentConfig)
    assert deployment.prefix_cache_max_bytes == 64 * 2**20
    assert any(
        r.levelname == "WARNING" and "prefix_cache_max_bytes" in r.getMessage()
        for r in caplog.records
    )
    monkeypatch.setenv(
        "BLAZE_MODELS", '[{"name": "a", "deployments": [{"model": "/m", "prefix_cache_mb": 2}]}]'
    )
    with pytest.warns(DeprecationWarning, match="prefix_cache_mb"):
        from_env = load_settings(None).models[0].deployments[0]
    assert isinstance(from_env, LLMDeploymentConfig)
    assert from_env.prefix_cache_max_bytes == 2 * 2**20


@pytest.mark.parametrize(
    ("entry", "needle"),
    [
        ("prefix_cache_mb: 64, prefix_cache_max_bytes: 1024", "both set"),
        ("prefix_cache_mb: lots", "whole number of MiB"),
        ("prefix_cache_mb: -1", "prefix_cache_max_bytes"),
    ],
)
def test_prefix_cache_keys_that_fail(tmp_path: Path, entry: str, needle: str) -> None:
    path = tmp_path / "blaze.yaml"
    path.write_text(f"models: [{{name: a, deployments: [{{model: /m, {entry}}}]}}]\n")
    with pytest.raises(ConfigError) as info, warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        load_settings(path)
    assert needle in info.value.message
