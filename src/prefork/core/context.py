"""What a machine's callbacks may touch: the time, and the list their effects go into.

The machines' models (a worker, the master) never see the supervisor: they read the
clock the supervisor advances from each event, and append effects to one outbox, which
``Supervisor.handle`` hands to the adapter when the event has been dealt with. Keeping
the two together in a small object is what lets a worker be built, tested and reasoned
about without the rest of the core (and keeps the import graph a tree).
"""

from __future__ import annotations

from prefork.core.effects import Effect


class MachineContext:
    """The clock (``now``, in the adapter's monotonic seconds) and the outbox."""

    def __init__(self) -> None:
        self.now = 0.0
        self._effects: list[Effect] = []

    def emit(self, effect: Effect) -> None:
        """Queue an effect (callbacks call this, and only this)."""
        self._effects.append(effect)

    def mark(self) -> int:
        """Where the outbox ends now: announcements can be put back at that place."""
        return len(self._effects)

    def insert(self, position: int, effects: list[Effect]) -> None:
        """Put ``effects`` at ``position`` (a transition's log line goes before the
        effects of the callbacks that ran for it)."""
        self._effects[position:position] = effects

    def since(self, position: int) -> list[Effect]:
        """The effects queued after ``position`` (for the tests that attribute them)."""
        return self._effects[position:]

    def take(self) -> list[Effect]:
        """Every queued effect, in order; the outbox is empty afterwards."""
        effects, self._effects = self._effects, []
        return effects
