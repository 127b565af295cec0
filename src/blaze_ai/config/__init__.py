"""Configuration: pydantic models of the YAML file, and the loader that merges BLAZE_* variables."""

from blaze_ai.config.load import load_settings
from blaze_ai.config.schema import LLMDeploymentConfig, ModelConfig, Settings

__all__ = ["LLMDeploymentConfig", "ModelConfig", "Settings", "load_settings"]
