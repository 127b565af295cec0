"""Turn a stream of generated token ids into text deltas, per sequence.

A :class:`SequenceTracker` follows one generated sequence. For each new token it re-decodes the
completion (full decoding keeps tokenizer spacing rules right), and decides

- the text that is safe to emit now: it holds back a trailing U+FFFD (half of a multi-byte
  character) and the last ``len(longest stop) - 1`` characters, which could still become a stop
  sequence;
- whether the sequence has finished: an end-of-sequence token or a stop sequence
  (``finish_reason="stop"``; the stop text and everything after it is cut), or ``max_tokens``
  reached (``"length"``).

This is the contract of vLLM's detokenizer and stop checker (``vllm/v1/engine/detokenizer.py``),
in a simpler O(n²) form that costs well under a millisecond per token for the sequence lengths a
CPU serves.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from blaze_ai.types import FinishReason

Decode = Callable[[Sequence[int]], str]


class SequenceTracker:
    """Follow one generated sequence.

    Args:
        decode: token ids -> text (special tokens skipped).
        stop: stop sequences (non-empty strings).
        eos_token_ids: ids that end the sequence.
        max_tokens: most tokens this sequence may generate (>= 1).
    """

    def __init__(
        self,
        decode: Decode,
        *,
        stop: Sequence[str],
        eos_token_ids: frozenset[int],
        max_tokens: int,
    ) -> None:
        self._decode = decode
        self._stop = tuple(s for s in stop if s)
        self._holdback = max((len(s) for s in self._stop), default=1) - 1
        self._eos = eos_token_ids
        self._max_tokens = max_tokens
        self.token_ids: list[int] = []
        self.text = ""
        self._emitted = 0
        self._stop_searched = 0
        self.finish_reason: FinishReason | None = None

    @property
    def done(self) -> bool:
        """True once the sequence has finished."""
        return self.finish_reason is not None

    @property
    def completion_tokens(self) -> int:
        """Tokens generated for this sequence, the end-of-sequence token included."""
        return len(self.token_ids)

    def add_token(self, token_id: int) -> str:
        """Record one generated token; return the text that became safe to emit (may be '').

        Tokens that arrive after the sequence finished (padding of a batch) are ignored.
        """
        if self.done:
            return ""
        self.token_ids.append(token_id)
        if token_id in self._eos:
            self.finish_reason = FinishReason.STOP
            return self._flush()
        self.text = self._decode(self.token_ids)
        if self._cut_at_stop():
            self.finish_reason = FinishReason.STOP
            return self._flush()
        if len(self.token_ids) >= self._max_tokens:
            self.finish_reason = FinishReason.LENGTH
            return self._flush()
        return self._emit(final=False)

    def finish(self, reason: FinishReason) -> str:
        """End the sequence now (generation stopped for another reason); return unsent text."""
        if self.done:
            return ""
        self.finish_reason = reason
        return self._flush()

    def _cut_at_stop(self) -> bool:
        if not self._stop:
            return False
        start = max(0, self._stop_searched - self._holdback)
        hits = [i for i in (self.text.find(s, start) for s in self._stop) if i >= 0]
        self._stop_searched = len(self.text)
        if not hits:
            return False
        self.text = self.text[: min(hits)]
        return True

    def _flush(self) -> str:
        return self._emit(final=True)

    def _emit(self, *, final: bool) -> str:
        end = len(self.text)
        if not final:
            end -= self._holdback
            if self.text.endswith("\ufffd"):
                end = min(end, len(self.text) - 1)
        if end <= self._emitted:
            return ""
        delta = self.text[self._emitted : end]
        self._emitted = end
        return delta
