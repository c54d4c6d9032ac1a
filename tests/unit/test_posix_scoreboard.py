"""The scoreboard: slots in shared memory, written by workers, read by the master."""

from __future__ import annotations

import os

from prefork.core.worker_machine import WorkerState
from prefork.posix.scoreboard import (
    FREE,
    FRESH_READING,
    IDLE,
    PERFORMING,
    SPAWNING,
    Reading,
    Scoreboard,
)


def test_an_allocated_slot_reads_fresh_and_a_released_one_is_reused() -> None:
    board = Scoreboard(segment_slots=4)
    first = board.allocate()
    assert board.read(first) == FRESH_READING == Reading(SPAWNING, 0.0, 0)
    slot = board.slot(first)
    slot.state[0] = PERFORMING
    slot.heartbeat[0] = 12.5
    slot.performs[0] = 7
    assert board.read(first) == Reading(PERFORMING, 12.5, 7)
    board.release(first)
    assert board.read(first).state == FREE
    again = board.allocate()
    assert again == first
    assert board.read(again) == FRESH_READING, "reset for its next worker"


def test_a_full_scoreboard_grows_by_a_segment_and_old_slots_keep_working() -> None:
    board = Scoreboard(segment_slots=2)
    indexes = [board.allocate() for _ in range(5)]
    assert sorted(indexes) == [0, 1, 2, 3, 4]
    assert board.capacity == 6
    for index in indexes:
        board.slot(index).performs[0] = index * 10
    assert [board.read(i).performs for i in indexes] == [0, 10, 20, 30, 40]


def test_a_forked_child_writes_what_the_parent_reads() -> None:
    board = Scoreboard()
    index = board.allocate()
    pid = os.fork()
    if pid == 0:  # the "worker"
        slot = board.slot(index)
        slot.heartbeat[0] = 99.25
        slot.performs[0] = 3
        slot.state[0] = IDLE
        os._exit(0)
    os.waitpid(pid, 0)
    reading = board.read(index)
    assert reading == Reading(IDLE, 99.25, 3)
    assert reading.worker_state is WorkerState.IDLE


def test_a_free_or_unknown_state_names_no_worker_state() -> None:
    assert Reading(FREE, 0.0, 0).worker_state is None
    assert Reading(42, 0.0, 0).worker_state is None
