"""The batch KV cache: left padding on join, row removal and trimming of padding columns."""

from __future__ import annotations

import torch

from blaze_ai.engines.llm.kv_cache import BatchKVCache, GrowableLayer, new_cache


def prefilled(*rows: list[float]) -> tuple[object, list[int]]:
    """A one-layer cache whose rows hold the given key values (1 head, head_dim 1)."""
    cache = new_cache()
    length = max(len(r) for r in rows)
    keys = torch.zeros(len(rows), 1, length, 1)
    for i, row in enumerate(rows):
        keys[i, 0, length - len(row) :, 0] = torch.tensor(row)
    cache.update(keys, keys.clone(), 0)
    return cache, [len(r) for r in rows]


def keys_of(batch: BatchKVCache) -> list[list[float]]:
    layer = batch.cache.layers[0]
    assert isinstance(layer, GrowableLayer) and layer.keys is not None
    return layer.keys[:, 0, :, 0].tolist()


def test_join_pads_the_shorter_side_on_the_left() -> None:
    batch = BatchKVCache()
    batch.join(*prefilled([1.0, 2.0]))  # type: ignore[arg-type]
    batch.join(*prefilled([3.0, 4.0, 5.0, 6.0]))  # type: ignore[arg-type]
    assert keys_of(batch) == [[0, 0, 1, 2], [3, 4, 5, 6]]
    assert batch.mask.tolist() == [[0, 0, 1, 1], [1, 1, 1, 1]]
    batch.join(*prefilled([7.0]))  # type: ignore[arg-type]
    assert keys_of(batch)[2] == [0, 0, 0, 7]
    assert batch.rows == 3


def test_appends_write_in_place_and_keep_trims_padding() -> None:
    batch = BatchKVCache()
    batch.join(*prefilled([1.0], [2.0, 3.0, 4.0]))  # type: ignore[arg-type]
    batch.extend_mask()
    step = torch.tensor([5.0, 6.0]).reshape(2, 1, 1, 1)
    batch.cache.update(step, step.clone(), 0)
    assert keys_of(batch) == [[0, 0, 1, 5], [2, 3, 4, 6]]
    batch.keep([0])  # the long row leaves: its padding columns go too
    assert keys_of(batch) == [[1, 5]]
    assert batch.mask.tolist() == [[1, 1]]
    batch.keep([])
    assert batch.rows == 0
