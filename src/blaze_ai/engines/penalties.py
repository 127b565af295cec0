"""OpenAI's presence and frequency penalties as a ``transformers`` logits processor.

For each row, with ``c[t]`` the number of times token ``t`` was generated so far (the prompt
does not count): ``logit[t] -= frequency_penalty * c[t] + presence_penalty * (c[t] > 0)``.
This is the formula of OpenAI's API reference and of vLLM (``vllm/model_executor/layers/utils.py``
``apply_penalties``).
"""

from __future__ import annotations

import torch
from transformers import LogitsProcessor


class PresenceFrequencyPenalty(LogitsProcessor):
    """Penalise tokens already generated.

    Args:
        prompt_tokens: length of the prompt prefix of ``input_ids``, excluded from the counts.
        presence_penalty: subtracted once from every generated token's logit (-2.0 to 2.0).
        frequency_penalty: subtracted per occurrence (-2.0 to 2.0).
    """

    def __init__(
        self, prompt_tokens: int, presence_penalty: float, frequency_penalty: float
    ) -> None:
        self._prompt_tokens = prompt_tokens
        self._presence = presence_penalty
        self._frequency = frequency_penalty

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """``scores`` (batch, vocab) less the penalties of ``input_ids`` (batch, length)."""
        generated = input_ids[:, self._prompt_tokens :]
        if generated.shape[1] == 0:
            return scores
        counts = torch.zeros_like(scores).scatter_add_(
            1, generated, torch.ones_like(generated, dtype=scores.dtype)
        )
        return scores - self._frequency * counts - self._presence * (counts > 0).to(scores.dtype)
