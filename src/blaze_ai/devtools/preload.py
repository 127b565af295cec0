"""What ``blaze serve`` imports, imported once by the forkserver of ``devtools/forked.py``.

Importing this module sets up the environment first, as ``start_server`` (``OMP_NUM_THREADS=1``
unless set) and the CLI (``OMP_WAIT_POLICY=PASSIVE`` unless set) do for a real start, since
OpenMP reads both only once, when torch loads. Never import it in a process that serves
requests in other ways: it imports torch.
"""

from __future__ import annotations

import importlib
import os

from blaze_ai.cli import prefer_passive_omp

MODULES = (
    "torch",
    "transformers",
    "transformers.models.llama.modeling_llama",
    "uvicorn",
    "typer",
    "blaze_ai.api.app",
    "blaze_ai.server.serve",
    "blaze_ai.gateway.build",
    "blaze_ai.engines.llm.engine",
    "blaze_ai.engines.llm.loader",
    "blaze_ai.engines.diffusion.engine",
    "blaze_ai.engines.remote.engine",
)
"""Imported in this order; the model-specific modules that the tests' tiny Llama needs too."""

os.environ.setdefault("OMP_NUM_THREADS", "1")
prefer_passive_omp()
for _name in MODULES:
    importlib.import_module(_name)
