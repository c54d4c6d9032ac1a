"""The deadlines' heap is pruned lazily, and rebuilt before stale entries pile up."""

from __future__ import annotations

from dataclasses import dataclass

from prefork.core.schedules import Deadlines
from prefork.core.worker_machine import WorkerState


@dataclass(eq=False)
class _Worker:
    serial: int
    deadline: float | None
    state: WorkerState = WorkerState.IDLE


def test_a_heap_of_stale_deadlines_is_rebuilt_past_4_per_worker_and_64() -> None:
    """A deadline moved N times leaves N-1 stale entries: they are kept (each push is
    O(log n)) until the heap holds more than 4 entries per worker plus 64, then the heap
    is rebuilt from the workers' current deadlines alone."""
    workers = [_Worker(serial, float(serial)) for serial in range(3)]
    deadlines = Deadlines()
    pushes = 0
    while pushes < 4 * 3 + 64:  # up to the bound: nothing is dropped
        worker = workers[pushes % 3]
        worker.deadline = 100.0 + pushes
        deadlines.push(worker, workers, 3)
        pushes += 1
        assert len(deadlines._heap) == pushes
    workers[0].deadline = 500.0
    deadlines.push(workers[0], workers, 3)  # one past it: rebuilt, one entry per worker
    assert sorted(entry[0] for entry in deadlines._heap) == [173.0, 174.0, 500.0]
    assert deadlines.earliest() == 173.0


def test_the_past_deadlines_come_out_once_each_in_spawn_order() -> None:
    early, late = _Worker(2, 5.0), _Worker(1, 7.0)
    deadlines = Deadlines()
    for worker in (early, late, early):
        deadlines.push(worker, [early, late], 2)
    assert deadlines.past(10.0) == [late, early]
    assert deadlines.earliest() is None
