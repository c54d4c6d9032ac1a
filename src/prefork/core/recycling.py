"""Recycling: a worker worn by its work (``max_performs``) or grown too big
(``max_memory``) is replaced without a dip in capacity.

Why not simply let it exit: a worker that exits at its limit leaves its slot empty until
the replacement has forked and run its ``setup()``, which may take seconds (a model to
load, a connection pool to fill). With every worker of a pool drawn to the same limit,
the whole pool would go down at once. So recycling goes the other way round:

1. the worker *asks* (its scoreboard slot says why, and its notice on the notify pipe wakes
   the master), or the master's own sample of its memory says it is over the limit;
2. the worker machine's ``recycle_requested`` or ``memory_sampled`` row moves it to
   ``retiring``: it no longer counts toward its group's target, so the slot falls vacant
   and the ordinary rule fills it (after the slot's back-off, if it has one) with an
   extra worker, while the old one **keeps performing**;
3. once the slot's new worker is ready (idle or performing, or retiring in turn: it has
   finished its setup and works), the rule below tells the old one to stop gracefully
   (QUIT): it finishes its perform, runs ``teardown()`` and exits 0, a retirement whose
   log line names the reason.

If the replacement fails its setup, the old worker keeps working and the slot backs off
as any failing slot does (its performs do not end the slot's run of failures: only a
live worker's do). A stop, a reload or a pause wins: those stop every worker, retiring
ones included, as they would any other; a smaller target stops a retiring worker whose
slot is gone at once (no replacement will come for it).

The per-worker limit of ``max_performs`` (plus a random ``0..max_performs_jitter``) is
drawn by the worker itself, outside the core, which never draws a random number: the
worker is the judge of its own count and only says when it is reached.

Memory is the worker's unique set size (USS), measured by the worker after its performs
and sampled by the master at a low rate. A worker over the limit is recycled as above.
One that is stuck inside a perform and still growing cannot wait for its replacement:
``growing_in_a_perform`` is true when two samples in a row are over the limit, both
taken while it performed the same perform (its count of performs did not move), and the
later one is larger. It is then told to stop at once (QUIT), and the ordinary stop
deadline sends KILL after ``graceful_timeout``.

The methods run on the worker's model (``Recycling`` is one of its bases).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, NamedTuple

from prefork.core.effects import Log

if TYPE_CHECKING:
    from prefork.core.context import MachineContext
    from prefork.core.settings import GroupConfig

MAX_PERFORMS = "max_performs"
MAX_MEMORY = "max_memory"
REASONS = (MAX_PERFORMS, MAX_MEMORY)


class MemorySample(NamedTuple):
    """The master's latest sample of a worker: USS in MiB, the worker's count of
    performs then, and whether it was performing."""

    mib: float
    performs: int
    busy: bool


def describe_memory(mib: float, limit: int) -> str:
    """``uses 212 MiB USS, over max_memory 200 MiB``: the figure and the limit (with a
    tenth of a MiB when the whole MiB would not show it over)."""
    figure = f"{mib:.0f}" if round(mib) > limit else f"{mib:.1f}"
    return f"uses {figure} MiB USS, over max_memory {limit} MiB"


class Recycling:
    """The guards and callbacks of the worker rows that recycle it."""

    settings: GroupConfig
    context: MachineContext
    label: str
    fields: Any  # the worker's: the structured fields of its log lines
    performs: int
    busy: bool
    recycled_for: str | None
    memory: MemorySample | None
    send_quit: Any

    # guards ---------------------------------------------------------------------------

    def over_memory_limit(self, mib: float, *_: Any) -> bool:
        """The sample is over the group's ``max_memory`` (never, without one)."""
        limit = self.settings.max_memory
        return limit is not None and mib > limit

    def growing_in_a_perform(self, mib: float, *_: Any) -> bool:
        """Over the limit on this sample and the one before, both taken inside the same
        perform, and larger now: a perform that keeps growing will not end by itself in
        time for its replacement."""
        before = self.memory
        return (self.over_memory_limit(mib) and self.busy and before is not None
                and before.busy and before.performs == self.performs
                and self.over_memory_limit(before.mib) and mib > before.mib)

    # callbacks ------------------------------------------------------------------------

    def note_recycling(self, reason: str, mib: float | None = None) -> None:
        """The worker asked to be replaced (``reason``: max_performs or max_memory, with
        its own figure of its memory)."""
        self.recycled_for = reason
        if reason == MAX_MEMORY and mib is not None and self.settings.max_memory:
            why = describe_memory(mib, self.settings.max_memory)
        elif reason == MAX_MEMORY:
            why = f"is over max_memory {self.settings.max_memory} MiB"
        else:
            jitter = self.settings.max_performs_jitter
            why = (f"did {self.performs} performs (max_performs {self.settings.max_performs}"
                   + (f" + up to {jitter} jitter" if jitter else "") + ")")
        self._announce(why, mib)

    def note_memory_recycling(self, mib: float) -> None:
        """The master's sample found the worker over ``max_memory``."""
        self.recycled_for = MAX_MEMORY
        self._announce(describe_memory(mib, self.settings.max_memory), mib)

    def _announce(self, why: str, mib: float | None) -> None:
        self.context.emit(Log("info", f"worker {self.label} {why}: recycling (it works on "
                                      "until its replacement is ready)",
                              self.fields("recycling", reason=self.recycled_for, uss_mib=mib,
                                          performs=self.performs)))

    def record_memory(self, mib: float) -> None:
        self.memory = MemorySample(mib, self.performs, self.busy)

    def quit_growing(self, mib: float) -> None:
        """Still growing inside one perform: QUIT now, KILL after ``graceful_timeout``."""
        limit = self.settings.max_memory
        self.context.emit(Log("warning", f"worker {self.label} {describe_memory(mib, limit)} "
                                         "and still growing inside one perform: QUIT, then "
                                         "KILL after graceful_timeout "
                                         f"({self.settings.graceful_timeout:g}s)",
                              self.fields("memory_runaway", uss_mib=mib, limit_mib=limit)))
        self.send_quit()


def replaced(worker: Any, working: Iterable[Any], target: int) -> bool:
    """A retiring ``worker`` may be told to stop: a newer worker of its slot works (among
    ``working``, the slot's workers that finished their setup and were not told to stop:
    idle, performing, or retiring in turn), or its slot is beyond its group's ``target``
    (no replacement will come).

    A newer worker that asked to be recycled as soon as it was ready still replaces this
    one: it works on until its own successor is ready. Were only a worker still counted
    toward the target a successor, a job whose every worker asks at once would pile up
    retiring workers in its slot without end."""
    if worker.slot >= target:
        return True
    return any(other.serial > worker.serial for other in working)
