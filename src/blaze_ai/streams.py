"""Between a stream and a whole answer: rebuild a :class:`TextResult` from stream items, and
replay a finished one as stream items. Used by engines that stream natively and by the cache.

And :func:`aclose`: close a stream now, rather than when it is garbage collected."""

from __future__ import annotations

from collections.abc import Iterator

from blaze_ai.types import Choice, FinishReason, StreamItem, TextChunk, TextResult, Usage


async def aclose(items: object) -> None:
    """Close the async generator ``items`` now (its ``finally`` blocks run in this task); a
    plain async iterator, or a generator that already finished, is left as it is."""
    close = getattr(items, "aclose", None)
    if close is not None:
        await close()


def replay(result: TextResult) -> Iterator[StreamItem]:
    """A finished answer as stream items: per choice its text, then its finish; then usage."""
    for choice in result.choices:
        if choice.text:
            yield TextChunk(choice.index, choice.text)
        yield TextChunk(choice.index, "", choice.finish_reason)
    yield result.usage


class StreamCollector:
    """Rebuilds the :class:`TextResult` of a stream of ``n`` choices from its items.

    Args:
        n: choices the request asked for.
    """

    def __init__(self, n: int) -> None:
        self._n = n
        self._texts: dict[int, list[str]] = {}
        self._finish: dict[int, FinishReason] = {}
        self._usage: Usage | None = None

    def add(self, item: StreamItem) -> None:
        """Take one item of the stream."""
        if isinstance(item, Usage):
            self._usage = item
            return
        self._texts.setdefault(item.index, []).append(item.text)
        if item.finish_reason is not None:
            self._finish[item.index] = item.finish_reason

    def result(self) -> TextResult | None:
        """The whole answer; None unless every choice finished and the usage arrived."""
        if self._usage is None or sorted(self._finish) != list(range(self._n)):
            return None
        choices = tuple(
            Choice(i, "".join(self._texts.get(i, ())), self._finish[i]) for i in range(self._n)
        )
        return TextResult(choices, self._usage)
