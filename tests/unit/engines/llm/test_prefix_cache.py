"""The prefix cache: longest block-aligned prefix, last token left to compute, LRU by bytes."""

from __future__ import annotations

import pytest
import torch

from blaze_ai.engines.llm import prefix_cache
from blaze_ai.engines.llm.prefix_cache import BLOCK_TOKENS, PrefixCache


def states(
    tokens: int, layers: int = 2, fill: float = 1.0
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per layer (keys, values) of shape (1, 2 heads, tokens, 4): 64 bytes a token a layer."""
    return [
        (torch.full((1, 2, tokens, 4), fill), torch.full((1, 2, tokens, 4), -fill))
        for _ in range(layers)
    ]


def test_longest_shared_prefix_rounded_down_to_a_block() -> None:
    cache = PrefixCache(1 << 20)
    cache.insert(list(range(20)), states(20))
    hit = cache.lookup([*range(10), 99, 98, 97])  # shares 10 tokens: two blocks of 4
    assert hit is not None and hit.tokens == 2 * BLOCK_TOKENS
    assert hit.layers[0][0].shape == (1, 2, 8, 4)
    assert cache.lookup([5, 6, 7, 8, 9]) is None  # shares nothing at the start
    assert cache.stats().hits == 1 and cache.stats().misses == 1
    assert cache.stats().reused_tokens == 8


def test_the_last_token_is_always_left_to_compute() -> None:
    cache = PrefixCache(1 << 20)
    cache.insert(list(range(12)), states(12))
    hit = cache.lookup(list(range(12)))  # the same prompt again
    assert hit is not None and hit.tokens == 8  # 11 usable tokens -> two full blocks
    assert cache.match_length(list(range(13))) == 12


def test_least_recently_used_prompt_goes_first_when_bytes_run_out() -> None:
    per_prompt = 8 * 2 * 2 * 4 * 4 * 2  # tokens x heads x dim x 4 bytes x (k, v) x layers
    cache = PrefixCache(2 * per_prompt)
    a, b, c = [1] * 8, [2] * 8, [3] * 8
    cache.insert(a, states(8))
    cache.insert(b, states(8))
    assert cache.lookup([*a, 0]) is not None  # a is now the most recently used
    cache.insert(c, states(8))
    assert cache.stats().entries == 2 and cache.stats().bytes == 2 * per_prompt
    assert cache.lookup([*b, 0]) is None
    assert cache.lookup([*a, 0]) is not None and cache.lookup([*c, 0]) is not None


def test_a_prompt_larger_than_the_budget_or_a_disabled_cache_holds_nothing() -> None:
    small = PrefixCache(100)
    small.insert(list(range(8)), states(8))
    assert small.stats().entries == 0
    off = PrefixCache(0)
    assert not off.enabled
    off.insert(list(range(8)), states(8))
    assert off.lookup(list(range(9))) is None and off.stats().misses == 0


def test_a_hash_collision_never_reuses_another_prompts_states(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(prefix_cache, "_block_hashes", lambda tokens: [7] * (len(tokens) // 4))
    cache = PrefixCache(1 << 20)
    cache.insert(list(range(8)), states(8))
    assert cache.lookup([9] * 9) is None  # same hashes, other tokens
    assert cache.lookup([*range(8), 1]) is not None


def test_clear_empties_it() -> None:
    cache = PrefixCache(1 << 20)
    cache.insert(list(range(8)), states(8))
    cache.clear()
    assert cache.stats().entries == 0 and cache.lookup(list(range(9))) is None


def test_evicting_a_prompt_keeps_the_shared_blocks_of_the_prompts_still_held() -> None:
    """Two prompts share a system prompt; the one inserted last (whose entry the shared blocks
    were indexed to) is evicted first: the other, still held, is still found."""
    per_prompt = 12 * 2 * 2 * 4 * 4 * 2
    cache = PrefixCache(2 * per_prompt)
    system = list(range(8))
    a, b = [*system, 20, 21, 22, 23], [*system, 30, 31, 32, 33]
    cache.insert(a, states(12))
    cache.insert(b, states(12))
    assert cache.lookup([*a, 0]) is not None  # a is now the most recently used: b goes first
    cache.insert([40] * 12, states(12))
    assert cache.stats().entries == 2
    hit = cache.lookup([*a, 0])
    assert hit is not None and hit.tokens == 12
    hit = cache.lookup([*system, 50, 51])  # only the system prompt is shared
    assert hit is not None and hit.tokens == 8


def test_a_prompt_held_again_is_found_after_the_longer_prompt_sharing_its_blocks_goes() -> None:
    per_prompt = 8 * 2 * 2 * 4 * 4 * 2
    cache = PrefixCache(4 * per_prompt)
    short, longer = list(range(8)), list(range(16))
    cache.insert(short, states(8))
    cache.insert(longer, states(16))  # its first two blocks are the short prompt's
    cache.insert(short, states(8))  # held already: only marked as recently used
    cache.insert([40] * 16, states(16))  # over the budget: the longer one, now LRU, goes
    assert cache.stats().entries == 2
    hit = cache.lookup([*short, 0])
    assert hit is not None and hit.tokens == 8


def test_evicting_an_entry_whose_block_hashes_collide(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prefix_cache, "_block_hashes", lambda tokens: [7] * (len(tokens) // 4))
    per_prompt = 8 * 2 * 2 * 4 * 4 * 2
    cache = PrefixCache(per_prompt)
    cache.insert(list(range(8)), states(8))  # hashes (7, 7)
    cache.insert([9] * 8, states(8))  # evicts the first
    assert cache.stats().entries == 1
    assert cache.lookup([9] * 9) is not None and cache.lookup([*range(8), 1]) is None
