"""OpenAI's presence and frequency penalties.

For each row, with ``c[t]`` the number of times token ``t`` was generated so far (the prompt
does not count): ``logit[t] -= frequency_penalty * c[t] + presence_penalty * (c[t] > 0)``.
This is the formula of OpenAI's API reference and of vLLM (``vllm/model_executor/layers/utils.py``
``apply_penalties``).
"""

from __future__ import annotations

import torch


def apply_penalties(
    scores: torch.Tensor, counts: torch.Tensor, presence_penalty: float, frequency_penalty: float
) -> torch.Tensor:
    """``scores`` (rows, vocab) less the penalties of ``counts`` (rows, vocab), the number of
    times each token was generated in each row so far.
    """
    penalty = frequency_penalty * counts + presence_penalty * (counts > 0).to(scores.dtype)
    return scores - penalty
