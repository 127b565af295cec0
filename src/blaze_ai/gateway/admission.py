"""Admission control: a bound on the requests the gateway holds at once."""

from __future__ import annotations

from typing import TYPE_CHECKING

from blaze_ai.errors import BackPressureError

if TYPE_CHECKING:
    from blaze_ai.gateway.model_group import GroupCounters


class Admission:
    """Admit at most ``max_pending`` requests at once; refuse the rest at once with 429.

    A request holds its slot from admission until its answer (or stream) ends, so the bound
    covers running and queued work and memory stays bounded under overload.

    Args:
        max_pending: most requests held at once (>= 1).
        retry_after_s: the ``Retry-After`` suggested to a refused client, in seconds.
    """

    def __init__(self, max_pending: int, *, retry_after_s: float = 1.0) -> None:
        if max_pending < 1:
            raise ValueError("max_pending must be at least 1")
        self.max_pending = max_pending
        self.pending = 0
        self._retry_after_s = retry_after_s

    def take(self, counters: GroupCounters | None = None) -> Slot:
        """Take one slot now, to hold as ``with admission.take():`` (no ``await`` between the
        two); a refusal is counted on the requested model's ``counters``.

        Raises:
            BackPressureError: every slot is taken.
        """
        if self.pending >= self.max_pending:
            if counters is not None:
                counters.admission_rejections += 1
            raise BackPressureError(
                f"the server is at capacity ({self.max_pending} requests in progress)",
                retry_after_s=self._retry_after_s,
            )
        self.pending += 1
        return Slot(self)

    def release(self) -> None:
        """Give one slot back (called by :class:`Slot`)."""
        self.pending -= 1


class Slot:
    """One admission slot, held from :meth:`Admission.take` until its ``with`` block ends (a
    plain class, not a ``@contextmanager`` generator: it is on every request's path)."""

    __slots__ = ("_admission", "_held")

    def __init__(self, admission: Admission) -> None:
        self._admission = admission
        self._held = True

    def __enter__(self) -> Slot:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._held:
            self._held = False
            self._admission.release()
