"""SequenceTracker: stop sequences, holdback, end-of-sequence and length, without a model."""

from __future__ import annotations

from collections.abc import Sequence

from blaze_ai.engines.llm.detokenizer import SequenceTracker
from blaze_ai.types import FinishReason

EOS = 0
VOCAB = {1: "Hel", 2: "lo", 3: " wor", 4: "ld", 5: "!", 6: " EN", 7: "D"}


def decode(ids: Sequence[int]) -> str:
    return "".join(VOCAB.get(i, "") for i in ids)


def run(tokens: list[int], **kwargs: object) -> tuple[list[str], SequenceTracker]:
    options = {"stop": (), "eos_token_ids": frozenset({EOS}), "max_tokens": 100, **kwargs}
    tracker = SequenceTracker(decode, **options)  # type: ignore[arg-type]
    deltas = [tracker.add_token(t) for t in tokens]
    return deltas, tracker


def test_text_streams_token_by_token_and_eos_stops() -> None:
    deltas, tracker = run([1, 2, 3, 4, EOS, 5])
    assert deltas == ["Hel", "lo", " wor", "ld", "", ""]
    assert tracker.finish_reason is FinishReason.STOP
    assert tracker.completion_tokens == 5  # the end-of-sequence token counts, later ones do not


def test_max_tokens_gives_length() -> None:
    deltas, tracker = run([1, 2, 3], max_tokens=2)
    assert "".join(deltas) == "Hello"
    assert tracker.finish_reason is FinishReason.LENGTH
    assert tracker.completion_tokens == 2


def test_stop_sequence_is_cut_and_never_emitted() -> None:
    deltas, tracker = run([1, 2, 3, 4, 6, 7, 5], stop=(" END",))
    assert "".join(deltas) == "Hello world"
    assert tracker.text == "Hello world"
    assert tracker.finish_reason is FinishReason.STOP
    assert tracker.completion_tokens == 6


def test_stop_sequence_spanning_tokens_is_held_back_until_decided() -> None:
    deltas, _ = run([1, 2, 3], stop=("lo w",))
    # "Hel" could be followed by "lo w": nothing of the partial match may leave early.
    assert "".join(deltas) == "Hel"


def test_holdback_is_released_when_the_stop_does_not_match() -> None:
    deltas, tracker = run([1, 2, 3, 4], stop=("xyz",), max_tokens=4)
    assert "".join(deltas) == "Hello world"
    assert tracker.finish_reason is FinishReason.LENGTH


def test_earliest_of_several_stops_wins() -> None:
    _, tracker = run([1, 2, 3, 4, 5], stop=("ld", "lo"))
    assert tracker.text == "Hel"


def test_incomplete_utf8_is_held_back() -> None:
    pieces = {1: "a", 2: "\ufffd", 3: "é"}
    state = {"n": 0}

    def decode_bytes(ids: Sequence[int]) -> str:
        state["n"] += 1
        text = "".join(pieces[i] for i in ids)
        # token 3 completes the character that token 2 started
        return text.replace("\ufffdé", "é")

    tracker = SequenceTracker(decode_bytes, stop=(), eos_token_ids=frozenset(), max_tokens=10)
    assert tracker.add_token(1) == "a"
    assert tracker.add_token(2) == ""
    assert tracker.add_token(3) == "é"


def test_finish_flushes_held_back_text() -> None:
    deltas, tracker = run([1, 2], stop=("zzzz",))
    assert "".join(deltas) == "He"  # the last len("zzzz") - 1 characters wait
    assert tracker.finish(FinishReason.LENGTH) == "llo"
    assert tracker.add_token(3) == ""
