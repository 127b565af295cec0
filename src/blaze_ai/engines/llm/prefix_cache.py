"""Automatic prefix caching: the keys and values of recent prompts, reused by later prompts.

Chat prompts share long prefixes: the chat template, the system prompt, the earlier turns of a
conversation. Their keys and values are the same whatever follows, so a new prompt that starts
with tokens already computed only needs its remaining tokens run through the model. This is
vLLM's *automatic prefix caching* (hash of each block chained with the previous block's hash) and
SGLang's RadixAttention (Zheng et al., 2024), reduced to what a CPU/GPU ``transformers`` engine
needs:

- an entry holds one prompt's keys and values, per layer, shape ``(1, kv_heads, tokens, head_dim)``;
- every block of :data:`BLOCK_TOKENS` tokens of an entry is indexed by the chained hash of the
  blocks up to it, so a lookup walks the new prompt block by block (``O(tokens)``) and stops at the
  first block no entry has; the tokens themselves are then compared, so a hash collision can never
  reuse the wrong states. A block several entries hold (a shared system prompt) is indexed to
  each of them: it stays found as long as one of them is held;
- entries are evicted least recently used first when their bytes pass ``max_bytes``.

Unlike vLLM's paged blocks, entries do not share memory: two prompts with the same system prompt
hold two copies of it. Reuse changes the floating-point order of the prompt's attention (the
prefix and the rest are computed in two passes), as it does in vLLM.

Not thread-safe: the batching thread owns it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import torch

BLOCK_TOKENS = 4
"""Tokens per indexed block: a shared prefix is reused down to a multiple of this."""

LayerStates = tuple[torch.Tensor, torch.Tensor]
"""One layer's ``(keys, values)``, each ``(rows, kv_heads, tokens, head_dim)``."""


@dataclass(frozen=True, slots=True)
class PrefixHit:
    """The reusable start of a prompt: ``tokens`` tokens and their states per layer."""

    tokens: int
    layers: tuple[LayerStates, ...]


@dataclass(slots=True)
class _Entry:
    tokens: tuple[int, ...]
    layers: tuple[LayerStates, ...]
    hashes: tuple[int, ...]
    nbytes: int


@dataclass(frozen=True, slots=True)
class PrefixCacheStats:
    """Counters of a :class:`PrefixCache`.

    Attributes:
        entries: prompts held.
        bytes: bytes of keys and values held.
        hits: lookups that reused at least one block.
        misses: lookups that reused nothing.
        reused_tokens: prompt tokens not recomputed thanks to the cache.
    """

    entries: int
    bytes: int
    hits: int
    misses: int
    reused_tokens: int


class PrefixCache:
    """Keys and values of recent prompts, looked up by longest shared prefix.

    Args:
        max_bytes: most bytes of keys and values held (0 disables the cache).
    """

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError("max_bytes must be >= 0")
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple[int, ...], _Entry] = OrderedDict()
        # chained block hash -> the entries holding that block, by their tokens (oldest first)
        self._index: dict[int, dict[tuple[int, ...], _Entry]] = {}
        self._bytes = 0
        self._hits = 0
        self._misses = 0
        self._reused = 0

    @property
    def enabled(self) -> bool:
        """False when ``max_bytes`` is 0."""
        return self.max_bytes > 0

    def match_length(self, prompt: Sequence[int]) -> int:
        """Tokens of ``prompt`` that a lookup would reuse (at most ``len(prompt) - 1``)."""
        entry, tokens = self._longest(prompt)
        return tokens if entry is not None else 0

    def lookup(self, prompt: Sequence[int]) -> PrefixHit | None:
        """The longest cached prefix of ``prompt``, leaving at least its last token to compute.

        The returned states are views: the caller copies them before writing.
        """
        entry, tokens = self._longest(prompt)
        if entry is None:
            if self.enabled:
                self._misses += 1
            return None
        self._entries.move_to_end(entry.tokens)
        self._hits += 1
        self._reused += tokens
        layers = tuple((k[:, :, :tokens], v[:, :, :tokens]) for k, v in entry.layers)
        return PrefixHit(tokens, layers)

    def insert(self, prompt: Sequence[int], layers: Sequence[LayerStates]) -> None:
        """Hold ``layers``, the states of every token of ``prompt`` (batch of one, not copied).

        A prompt already held is only marked as recently used; one larger than ``max_bytes``
        is not held.
        """
        key = tuple(prompt)
        if not self.enabled or len(key) < BLOCK_TOKENS:
            return
        if key in self._entries:
            self._entries.move_to_end(key)
            return
        nbytes = sum(k.nbytes + v.nbytes for k, v in layers)
        if nbytes > self.max_bytes:
            return
        entry = _Entry(key, tuple(layers), tuple(_block_hashes(key)), nbytes)
        self._entries[key] = entry
        self._bytes += nbytes
        for h in entry.hashes:
            self._index.setdefault(h, {})[key] = entry
        while self._bytes > self.max_bytes:
            self._evict(next(iter(self._entries.values())))

    def clear(self) -> None:
        """Drop every entry."""
        self._entries.clear()
        self._index.clear()
        self._bytes = 0

    def stats(self) -> PrefixCacheStats:
        """Entries, bytes and counters."""
        return PrefixCacheStats(
            len(self._entries), self._bytes, self._hits, self._misses, self._reused
        )

    def _longest(self, prompt: Sequence[int]) -> tuple[_Entry | None, int]:
        if not self._index:
            return None, 0
        usable = len(prompt) - 1  # the last token is run to get the next token's logits
        best: _Entry | None = None
        blocks = 0
        for i, h in enumerate(_block_hashes(prompt[:usable])):
            holders = self._index.get(h)
            if not holders:
                break
            best, blocks = next(reversed(holders.values())), i + 1
        tokens = blocks * BLOCK_TOKENS
        if best is None or tuple(prompt[:tokens]) != best.tokens[:tokens]:
            return None, 0
        return best, tokens

    def _evict(self, entry: _Entry) -> None:
        del self._entries[entry.tokens]
        self._bytes -= entry.nbytes
        for h in entry.hashes:  # a hash can repeat within an entry (a collision)
            holders = self._index.get(h)
            if holders is not None:
                holders.pop(entry.tokens, None)
                if not holders:
                    del self._index[h]


def _block_hashes(tokens: Sequence[int]) -> list[int]:
    """The chained hash of each full block of ``tokens``: hash(previous hash, block)."""
    hashes: list[int] = []
    previous = 0
    for start in range(0, len(tokens) - BLOCK_TOKENS + 1, BLOCK_TOKENS):
        previous = hash((previous, *tokens[start : start + BLOCK_TOKENS]))
        hashes.append(previous)
    return hashes
