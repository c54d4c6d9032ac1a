"""The master's running counts, for the metrics: how workers ended, and what it did about it.

The metrics endpoint shows counters that only ever go up, per pool: workers forked again
into a slot that had one (restarts), how each worker ended (its outcome), the workers the
master killed and why, the workers recycled and why, performs finished by workers that
are gone and performs that failed. The live workers' own counts are in the snapshot; a
reader adds the two, so a pool's performs never go down when a worker is replaced.

Counted here, in the core, because the core is where each of these is decided: the
supervisor calls ``forked``, ``reaped``, ``fork_failed`` and ``failed_performs`` at the
moments it learns of them (``worker_events``). Pure bookkeeping, no effects.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from prefork.core.outcomes import Outcome

# what ended a worker the master had not asked to stop, but that is no failure: a reason
# for the recycles counter (the recycling policy adds its own reasons here)
RECYCLE_REASONS = ("max_performs", "max_memory")


@dataclass(frozen=True)
class GroupCounts:
    """One pool's counters at one moment (immutable): each a tuple of ``(label, n)``."""

    group: str
    restarts: int = 0
    exits: tuple[tuple[str, int], ...] = ()  # by outcome: crashed, killed, retired...
    kills: tuple[tuple[str, int], ...] = ()  # by why: timeout, graceful_timeout...
    recycles: tuple[tuple[str, int], ...] = ()  # by reason: max_performs...
    performs_of_ended: int = 0  # performs finished by workers that are gone
    perform_failures: int = 0  # failed performs that did not end their worker

    def exit_count(self, *outcomes: str) -> int:
        """How many workers ended with any of ``outcomes``."""
        return sum(n for outcome, n in self.exits if outcome in outcomes)


class _GroupTally:
    def __init__(self) -> None:
        self.seen_slots: set[int] = set()
        self.restarts = 0
        self.exits: Counter[str] = Counter()
        self.kills: Counter[str] = Counter()
        self.recycles: Counter[str] = Counter()
        self.performs_of_ended = 0
        self.perform_failures = 0


class Tally:
    """Every pool's counters; a pool a reload drops keeps its counts (they never go down)."""

    def __init__(self) -> None:
        self._groups: dict[str, _GroupTally] = {}

    def _of(self, group: str) -> _GroupTally:
        return self._groups.setdefault(group, _GroupTally())

    def forked(self, group: str, slot: int) -> None:
        """A worker forked into ``slot``: a restart if the slot had a worker before."""
        tally = self._of(group)
        if slot in tally.seen_slots:
            tally.restarts += 1
        tally.seen_slots.add(slot)

    def fork_failed(self, group: str) -> None:
        self._of(group).exits[str(Outcome.FORK_FAILED)] += 1

    def reaped(self, worker: Any) -> None:
        """A worker is gone (after its exited row fired): its outcome, why the master
        killed it (if it did), why it recycled itself (if it did), its performs."""
        tally = self._of(worker.group)
        outcome = worker.outcome
        if outcome is not None:
            tally.exits[str(outcome)] += 1
        if worker.killed_for is not None:
            tally.kills[worker.killed_for] += 1
        reason = recycle_reason(worker)
        if reason is not None:
            tally.recycles[reason] += 1
        tally.performs_of_ended += worker.performs

    def failed_performs(self, group: str, count: int) -> None:
        self._of(group).perform_failures += count

    def counts(self, groups: list[str]) -> tuple[GroupCounts, ...]:
        """The counters of ``groups`` (those running now), then of any other pool seen."""
        names = list(groups) + [name for name in self._groups if name not in groups]
        return tuple(self._frozen(name) for name in names)

    def _frozen(self, name: str) -> GroupCounts:
        tally = self._groups.get(name) or _GroupTally()
        return GroupCounts(
            group=name,
            restarts=tally.restarts,
            exits=tuple(sorted(tally.exits.items())),
            kills=tuple(sorted(tally.kills.items())),
            recycles=tuple(sorted(tally.recycles.items())),
            performs_of_ended=tally.performs_of_ended,
            perform_failures=tally.perform_failures,
        )


def recycle_reason(worker: Any) -> str | None:
    """Why a retired worker was recycled (``None``: it was not): the reason it was
    recycled for (``max_performs``, ``max_memory``: ``prefork.core.recycling``), or, for
    one that exited by itself, its count at ``max_performs``."""
    if worker.outcome is not Outcome.RETIRED:
        return None
    if worker.recycled_for is not None:
        return str(worker.recycled_for)
    limit = worker.settings.max_performs
    if limit is not None and worker.performs >= limit:
        return "max_performs"
    return None
