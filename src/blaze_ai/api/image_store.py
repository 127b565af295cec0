"""A bounded, expiring in-memory store of generated images, served at ``/v1/files/images/{id}``.

Images returned with ``response_format: url`` are kept here for ``ttl_s`` seconds under an
unguessable id (128 random bits). The store holds at most ``max_bytes``; when a new image would
not fit, the oldest images go first. Expired images are dropped on every access (no background
task), and all images share one time-to-live, so the oldest is always the first to expire.
"""

from __future__ import annotations

import secrets
from collections import OrderedDict
from dataclasses import dataclass

from blaze_ai.errors import InvalidRequestError
from blaze_ai.resilience.clock import Clock, MonotonicClock


@dataclass(frozen=True, slots=True)
class StoredImage:
    """One stored file: its bytes, media type, and expiry time (seconds on the store's clock)."""

    data: bytes
    media_type: str
    expires_at: float


class ImageStore:
    """Generated images by id, bounded in bytes and in time.

    Args:
        max_bytes: most bytes held at once.
        ttl_s: seconds an image stays downloadable.
        clock: monotonic time source (a fake one in tests).
    """

    def __init__(self, *, max_bytes: int, ttl_s: float, clock: Clock | None = None) -> None:
        self.max_bytes = max_bytes
        self.ttl_s = ttl_s
        self._clock = clock or MonotonicClock()
        self._images: OrderedDict[str, StoredImage] = OrderedDict()
        self._bytes = 0

    @property
    def stored_bytes(self) -> int:
        """Bytes held now (expired images included until the next access)."""
        return self._bytes

    def put(self, data: bytes, media_type: str = "image/png") -> str:
        """Store ``data`` and return its id.

        Raises:
            InvalidRequestError: (param ``response_format``) the image alone is larger than the
                store; the client should ask for ``b64_json``.
        """
        if len(data) > self.max_bytes:
            raise InvalidRequestError(
                "the image is too large to be served as a url; use response_format b64_json",
                param="response_format",
            )
        self._drop_expired()
        while self._bytes + len(data) > self.max_bytes:
            _, oldest = self._images.popitem(last=False)
            self._bytes -= len(oldest.data)
        image_id = secrets.token_urlsafe(16)
        self._images[image_id] = StoredImage(data, media_type, self._clock.now() + self.ttl_s)
        self._bytes += len(data)
        return image_id

    def get(self, image_id: str) -> StoredImage | None:
        """The image with ``image_id``, or None if it never existed, expired or was pushed out."""
        self._drop_expired()
        return self._images.get(image_id)

    def _drop_expired(self) -> None:
        now = self._clock.now()
        while self._images:
            image_id, oldest = next(iter(self._images.items()))
            if oldest.expires_at > now:
                return
            del self._images[image_id]
            self._bytes -= len(oldest.data)
