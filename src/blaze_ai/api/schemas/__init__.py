"""Pydantic models of the OpenAI request bodies, each with ``to_internal()``."""
