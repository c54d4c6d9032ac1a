"""The two timetables beside the roster: workers' deadlines, and vacant slots' refill times.

Both are heaps pruned lazily: an entry is pushed whenever a time is set, never removed
when it changes, and dropped when it reaches the top and no longer says what its worker
or slot says. Reading the earliest time is then cheap however many workers there are.
The roster keeps them in step through its one door; ``recount`` checks them.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable
from typing import Any

from prefork.core.worker_machine import Worker, WorkerState

Slot = tuple[str, int]


class _Timetable:
    """A heap of entries that begin with a time, pruned lazily: ``_current(entry)`` says
    whether an entry still says what its worker or slot says."""

    def __init__(self) -> None:
        self._heap: list[tuple[Any, ...]] = []

    def _current(self, entry: tuple[Any, ...]) -> bool:
        raise NotImplementedError

    def _top(self) -> tuple[Any, ...] | None:
        """The earliest current entry (stale ones above it are dropped)."""
        heap = self._heap
        while heap and not self._current(heap[0]):
            heapq.heappop(heap)
        return heap[0] if heap else None

    def _pop_until(self, now: float) -> list[tuple[Any, ...]]:
        """Take out every entry due at ``now``; the current ones, in time order."""
        heap, due = self._heap, []
        while heap and heap[0][0] <= now:
            entry = heapq.heappop(heap)
            if self._current(entry):
                due.append(entry)
        return due


class Deadlines(_Timetable):
    """Workers by deadline (the earlier of a worker's timeout and its stop's)."""

    def push(self, worker: Worker, workers: Iterable[Worker], count: int) -> None:
        """``worker``'s deadline was set; ``workers`` (``count`` of them) are every worker,
        for a rebuild once the heap is mostly stale."""
        heapq.heappush(self._heap, (worker.deadline, worker.serial, worker))
        if len(self._heap) > 4 * count + 64:
            self._heap = [(w.deadline, w.serial, w) for w in workers if w.deadline is not None]
            heapq.heapify(self._heap)

    def _current(self, entry: tuple[Any, ...]) -> bool:
        when, _, worker = entry
        return bool(worker.deadline == when and worker.state is not WorkerState.DEAD)

    def earliest(self) -> float | None:
        top = self._top()
        return None if top is None else top[0]

    def past(self, now: float) -> list[Worker]:
        """Workers whose deadline has come, in spawn order (each once)."""
        due = dict.fromkeys(entry[2] for entry in self._pop_until(now))
        return sorted(due, key=lambda worker: worker.serial)


class Vacancies(_Timetable):
    """Slots below their group's target with no live worker, each with the time it may be
    refilled (``refill_time(group, slot)``: the restart policy's back-off)."""

    def __init__(self, refill_time: Callable[[str, int], float]) -> None:
        super().__init__()
        self._refill_time = refill_time
        self._when: dict[Slot, float] = {}
        self._order: dict[str, int] = {}  # group -> its place in the config

    def reset(self, groups: Iterable[str]) -> None:
        """The targets changed: no vacancy yet, groups in this order."""
        self._order = {group: index for index, group in enumerate(groups)}
        self._when = {}
        self._heap = []

    def open(self, key: Slot) -> None:
        """The slot falls (or stays) vacant: it is refilled at its refill time."""
        group, slot = key
        when = self._refill_time(group, slot)
        self._when[key] = when
        heapq.heappush(self._heap, (when, self._order[group], slot, group))

    def fill(self, key: Slot) -> None:
        self._when.pop(key, None)

    def reschedule(self, key: Slot) -> None:
        """The slot's refill time changed (a failure backed it off): if it is vacant,
        it is refilled at the new time."""
        if key in self._when:
            self.open(key)

    def _current(self, entry: tuple[Any, ...]) -> bool:
        when, _, slot, group = entry
        return self._when.get((group, slot)) == when  # not filled, nor moved since

    def earliest_after(self, now: float) -> float | None:
        """The first back-off to end after ``now``: when a vacant slot may be spawned."""
        top = self._top()
        if top is None or top[0] > now:
            return None if top is None else top[0]
        # some slot is due but was not spawned (too many crashes): look past it
        return min((when for when in self._when.values() if when > now), default=None)

    def due(self, now: float) -> list[Slot]:
        """Vacant slots whose back-off is over, in group then slot order."""
        due = dict.fromkeys((entry[3], entry[2]) for entry in self._pop_until(now))
        return sorted(due, key=lambda key: (self._order[key[0]], key[1]))

    def recount(self, expected: set[Slot]) -> list[str]:
        """Where the vacancies differ from ``expected`` or from the refill times."""
        errors = []
        if expected != set(self._when):
            errors.append(f"vacant slots {sorted(self._when)} != {sorted(expected)}")
        for (group, slot), when in self._when.items():
            if when != self._refill_time(group, slot):
                errors.append(f"slot {(group, slot)} refills at {when}, its history says "
                              "otherwise")
        return errors
