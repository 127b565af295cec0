"""Build an engine from its deployment config: the one place that maps config to engine classes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from blaze_ai.config.schema import (
    DeploymentConfig,
    DiffusionDeploymentConfig,
    RemoteDeploymentConfig,
    RuntimeConfig,
)
from blaze_ai.engines.base import AnyEngine
from blaze_ai.engines.diffusion.pipeline_cache import PipelineCache


def make_engine_factory(runtime: RuntimeConfig) -> Callable[[str, DeploymentConfig], AnyEngine]:
    """Return ``factory(name, config) -> engine`` bound to the process-wide ``runtime``.

    Every diffusion engine it builds shares one pipeline cache, bounded by
    ``runtime.image_pipelines_max_bytes``.
    """
    cache_dir = Path(runtime.cache_dir).expanduser()
    pipelines = PipelineCache(runtime.image_pipelines_max_bytes)

    def factory(name: str, config: DeploymentConfig) -> AnyEngine:
        # engine modules import torch (and diffusers): only when a deployment uses them
        if isinstance(config, RemoteDeploymentConfig):
            from blaze_ai.engines.remote.engine import RemoteEngine

            return RemoteEngine(name, config)
        if isinstance(config, DiffusionDeploymentConfig):
            from blaze_ai.engines.diffusion.engine import DiffusersEngine

            return DiffusersEngine(
                name, config, cache=pipelines, torch_threads=runtime.torch_threads
            )
        from blaze_ai.engines.llm.engine import TransformersLLMEngine

        return TransformersLLMEngine(
            name, config, cache_dir=cache_dir, torch_threads=runtime.torch_threads
        )

    return factory
