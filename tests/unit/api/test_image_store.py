"""The image store behind ``response_format: url``: bounded in bytes and in time."""

from __future__ import annotations

import pytest

from blaze_ai.api.image_store import ImageStore
from blaze_ai.errors import InvalidRequestError
from tests.fakes import FakeClock


def test_images_expire_after_their_ttl() -> None:
    clock = FakeClock()
    store = ImageStore(max_bytes=1000, ttl_s=60, clock=clock)
    image_id = store.put(b"png")
    clock.advance(59)
    stored = store.get(image_id)
    assert stored is not None and stored.data == b"png" and stored.media_type == "image/png"
    clock.advance(1)
    assert store.get(image_id) is None
    assert store.stored_bytes == 0


def test_oldest_images_go_first_beyond_max_bytes() -> None:
    store = ImageStore(max_bytes=10, ttl_s=60, clock=FakeClock())
    first, second = store.put(b"1234"), store.put(b"5678")
    third = store.put(b"abcd")
    assert store.get(first) is None
    assert store.get(second) is not None and store.get(third) is not None
    assert store.stored_bytes == 8


def test_ids_are_unguessable_and_unknown_ids_are_none() -> None:
    store = ImageStore(max_bytes=100, ttl_s=60)
    ids = {store.put(b"x") for _ in range(5)}
    assert len(ids) == 5 and all(len(i) >= 20 for i in ids)
    assert store.get("nope") is None


def test_an_image_larger_than_the_store_is_refused() -> None:
    store = ImageStore(max_bytes=4, ttl_s=60)
    with pytest.raises(InvalidRequestError) as info:
        store.put(b"12345")
    assert info.value.param == "response_format"
