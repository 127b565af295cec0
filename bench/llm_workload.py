"""What the LLM benchmarks share: the embedded model, the prompts, and greedy generation.

``bench/llm_engine.py`` and ``bench/llm_throughput.py`` import it (run them from the repository
root; Python puts ``bench/`` on the path of a script run from there).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, cast

import torch

from blaze_ai.engines.llm.loader import LoadedModel
from blaze_ai.types import ChatRequest, Message, SamplingParams

MODEL = "builtin:smollm2-135m-instruct"
SERVED = "smollm2"
CACHE_DIR = Path("~/.cache/blaze")
WARMUP_PROMPT = "Say hello."
PROMPTS = (
    "Write a short poem about the sea.",
    "Explain in simple words what a CPU cache is.",
    "Give me three tips for writing clean Python code.",
    "What is the capital of France, and why is it famous?",
    "Describe how a bicycle works to a ten-year-old.",
    "Tell me a joke about cats.",
    "List five fruits and their colours.",
    "How do airplanes fly?",
    "What is photosynthesis?",
    "Summarize the plot of Romeo and Juliet.",
    "Why is the sky blue?",
    "Give me a recipe for pancakes.",
    "What are the planets of the solar system?",
    "Explain recursion with an example.",
    "What is the difference between weather and climate?",
    "Write a haiku about autumn.",
)


def prompt(i: int) -> str:
    """The ``i``-th prompt: :data:`PROMPTS` in turn, marked ``(variant k)`` past the first pass."""
    base = PROMPTS[i % len(PROMPTS)]
    return base if i < len(PROMPTS) else f"{base} (variant {i // len(PROMPTS)})"


def chat_request(text: str, max_tokens: int) -> ChatRequest:
    """A greedy chat request for the served model with one user message."""
    params = SamplingParams(max_tokens=max_tokens, temperature=0.0)
    return ChatRequest(SERVED, (Message("user", text),), params)


def prompt_ids(loaded: LoadedModel, text: str) -> list[int]:
    """``text`` as one user message through the model's chat template, as token ids."""
    tokenizer = cast(Any, loaded.tokenizer)
    encoded = tokenizer.apply_chat_template(
        [{"role": "user", "content": text}], add_generation_prompt=True, return_dict=True
    )
    return list(encoded["input_ids"])


def generate_greedy(loaded: LoadedModel, text: str, max_tokens: int) -> tuple[list[int], str]:
    """Plain ``transformers`` ``generate`` (batch of one, greedy): generated ids and text."""
    ids = torch.tensor([prompt_ids(loaded, text)], device=loaded.device)
    with torch.inference_mode():
        out = loaded.model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=max_tokens,
            do_sample=False,
            eos_token_id=sorted(loaded.eos_token_ids),
            pad_token_id=loaded.pad_token_id,
        )
    generated = out[0, ids.shape[1] :].tolist()
    return generated, str(cast(Any, loaded.tokenizer).decode(generated, skip_special_tokens=True))


def chat_body(text: str, max_tokens: int, *, stream: bool) -> dict[str, Any]:
    """The JSON body of a greedy ``/v1/chat/completions`` request (with usage when streamed)."""
    body: dict[str, Any] = {
        "model": SERVED,
        "messages": [{"role": "user", "content": text}],
        "max_tokens": max_tokens,
        "temperature": 0,
    }
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


class StreamReader:
    """Reads a streamed chat completion line by line (SSE): its text, its completion tokens
    (from the usage chunk) and the time to its first content, in seconds from ``started``
    (a ``time.perf_counter()`` reading).
    """

    def __init__(self, started: float) -> None:
        self.started = started
        self.parts: list[str] = []
        self.tokens = -1
        self.first_content_s: float | None = None

    def feed(self, line: str) -> None:
        """Take one line of the response body.

        Raises:
            RuntimeError: the line is an error event.
        """
        if not line.startswith("data: ") or line == "data: [DONE]":
            return
        event = json.loads(line[len("data: ") :])
        if "error" in event:
            raise RuntimeError(f"stream error: {event['error']}")
        if event.get("usage"):
            self.tokens = event["usage"]["completion_tokens"]
        for choice in event.get("choices", []):
            content = choice.get("delta", {}).get("content")
            if content:
                if self.first_content_s is None:
                    self.first_content_s = time.perf_counter() - self.started
                self.parts.append(content)

    @property
    def text(self) -> str:
        """The content streamed so far."""
        return "".join(self.parts)
