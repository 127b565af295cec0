"""Build an engine from its deployment config: the one place that maps config to engine classes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from blaze_ai.config.schema import DeploymentConfig, RemoteDeploymentConfig, RuntimeConfig
from blaze_ai.engines.base import LLMEngine


def make_engine_factory(runtime: RuntimeConfig) -> Callable[[str, DeploymentConfig], LLMEngine]:
    """Return ``factory(name, config) -> LLMEngine`` bound to the process-wide ``runtime``."""
    cache_dir = Path(runtime.cache_dir).expanduser()

    def factory(name: str, config: DeploymentConfig) -> LLMEngine:
        if isinstance(config, RemoteDeploymentConfig):
            from blaze_ai.engines.remote import RemoteEngine

            return RemoteEngine(name, config)
        from blaze_ai.engines.llm import TransformersLLMEngine  # imports torch: only when used

        return TransformersLLMEngine(
            name, config, cache_dir=cache_dir, torch_threads=runtime.torch_threads
        )

    return factory
