"""Choose the next token of every sequence of one request from the model's logits.

Per request, in ``transformers``' order: presence/frequency penalties, then, when sampling,
temperature, top-p, and a draw from a :class:`torch.Generator` of the request's own, or with a
``seed`` of each sequence's own: seeded draws depend neither on the other requests in the batch
nor on how many of the request's ``n`` sequences run together. ``temperature == 0`` is
greedy (argmax). No top-k: OpenAI's API has none (vLLM's default, ``top_k=-1``, is off too).

Presence and frequency penalties, for each row with ``c[t]`` the number of times token ``t`` was
generated so far (the prompt does not count): ``logit[t] -= frequency_penalty * c[t] +
presence_penalty * (c[t] > 0)``, the formula of OpenAI's API reference and of vLLM
(``vllm/model_executor/layers/utils.py`` ``apply_penalties``).
"""

from __future__ import annotations

import torch
from transformers import TemperatureLogitsWarper, TopPLogitsWarper

from blaze_ai.errors import InvalidRequestError
from blaze_ai.types import SamplingParams

_NO_IDS = torch.empty(0, dtype=torch.long)


class RequestSampler:
    """The sampling state of one request's sequences (rows).

    Args:
        params: the request's sampling parameters.
        rows: sequences of the request sampled together (its ``n``, or a group of them).
        stream: index of the first of those sequences; with a ``seed``, sequence ``i`` draws
            from a generator of its own seeded from ``(seed, i)``, so a choice depends on the
            request alone, not on how many of its ``n`` run together (the deployment's
            ``max_sequences_per_request``), and no two choices repeat each other.
        vocab_size: columns of the logits.
        device: where the logits live.
    """

    def __init__(
        self,
        params: SamplingParams,
        *,
        rows: int,
        vocab_size: int,
        device: torch.device,
        stream: int = 0,
    ) -> None:
        self._params = params
        self.greedy = params.temperature == 0
        self._penalised = bool(params.presence_penalty or params.frequency_penalty)
        self._counts = torch.zeros(rows, vocab_size, device=device) if self._penalised else _NO_IDS
        self._generators = _generators(params.seed, stream, rows, device)
        self._warpers = [] if self.greedy else _warpers(params)

    @property
    def plain_greedy(self) -> bool:
        """True when the next token is the argmax of the raw logits (no penalties)."""
        return self.greedy and not self._penalised

    def keep(self, rows: list[int]) -> None:
        """Forget the rows not in ``rows`` (their sequences finished)."""
        if self._penalised:
            self._counts = self._counts[rows]
        if len(self._generators) > 1:
            self._generators = [self._generators[i] for i in rows]

    def next_tokens(self, logits: torch.Tensor) -> torch.Tensor:
        """Token ids ``(rows,)`` for float32 ``logits`` ``(rows, vocab)``.

        Raises:
            InvalidRequestError: the parameters turn the logits into no valid distribution
                (for example a temperature so small that they overflow).
        """
        scores = logits
        if self._penalised:
            scores = apply_penalties(
                scores, self._counts, self._params.presence_penalty, self._params.frequency_penalty
            )
        tokens = scores.argmax(dim=-1) if self.greedy else self._draw(scores)
        if self._penalised:
            self._counts[torch.arange(tokens.shape[0]), tokens] += 1
        return tokens

    def _draw(self, scores: torch.Tensor) -> torch.Tensor:
        for warper in self._warpers:
            scores = warper(_NO_IDS, scores)
        probs = torch.softmax(scores, dim=-1)
        if not bool(torch.isfinite(probs).all()):
            raise InvalidRequestError(
                "temperature, top_p and the penalties give no valid probability distribution",
                param="temperature",
            )
        if len(self._generators) == 1:
            return torch.multinomial(probs, 1, generator=self._generators[0]).squeeze(1)
        return torch.cat(
            [
                torch.multinomial(probs[i : i + 1], 1, generator=generator).squeeze(1)
                for i, generator in enumerate(self._generators)
            ]
        )


def _warpers(params: SamplingParams) -> list[TemperatureLogitsWarper | TopPLogitsWarper]:
    warpers: list[TemperatureLogitsWarper | TopPLogitsWarper] = []
    if params.temperature != 1.0:
        warpers.append(TemperatureLogitsWarper(params.temperature))
    if params.top_p < 1.0:
        warpers.append(TopPLogitsWarper(params.top_p))
    return warpers


def apply_penalties(
    scores: torch.Tensor, counts: torch.Tensor, presence_penalty: float, frequency_penalty: float
) -> torch.Tensor:
    """``scores`` (rows, vocab) less the penalties of ``counts`` (rows, vocab), the number of
    times each token was generated in each row so far.
    """
    penalty = frequency_penalty * counts + presence_penalty * (counts > 0).to(scores.dtype)
    return scores - penalty


_GOLDEN = 0x9E3779B97F4A7C15  # 2**64 / golden ratio: spreads consecutive streams apart


def _stream_seed(seed: int, stream: int) -> int:
    """The seed of sequence ``stream``'s generator (``seed`` itself for 0)."""
    return seed if stream == 0 else (seed + stream * _GOLDEN) % 2**63


def _generators(
    seed: int | None, first: int, rows: int, device: torch.device
) -> list[torch.Generator]:
    """One seeded generator per sequence (``first`` to ``first + rows - 1``) with a ``seed``;
    else one randomly seeded generator shared by the rows."""
    if seed is None:
        generator = torch.Generator(device=device)
        generator.seed()
        return [generator]
    return [
        torch.Generator(device=device).manual_seed(_stream_seed(seed, first + i))
        for i in range(rows)
    ]
