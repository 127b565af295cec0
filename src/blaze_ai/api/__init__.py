"""The OpenAI-compatible HTTP API (FastAPI). It calls only the Gateway."""
