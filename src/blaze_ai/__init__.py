"""Blaze AI: a self-hosted AI inference server and gateway with an OpenAI-compatible API."""

__version__ = "0.1.0"
