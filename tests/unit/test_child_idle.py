"""``prefork.IDLE``: a perform that found no work is neither counted nor busy.

The perform loops run in this process (the forking one forks for real), as in
``test_child_runtime.py``; these tests read what they leave in the scoreboard slot.
"""

from __future__ import annotations

import os
import pickle

import pytest
from test_child_runtime import as_signal, make_ready_worker

import prefork
from prefork.child.strategies import EXIT_IDLE, forking_loop, simple_loop
from prefork.job import IDLE, BoundJob, Job, job_spec
from prefork.posix.scoreboard import IDLE as IDLE_STATE
from prefork.posix.scoreboard import PERFORMING

pytestmark = pytest.mark.timeout(20)


def test_idle_is_one_documented_sentinel_exported_by_prefork() -> None:
    assert prefork.IDLE is IDLE
    assert repr(IDLE) == "prefork.IDLE"
    assert pickle.loads(pickle.dumps(IDLE)) is IDLE
    assert type(IDLE)() is IDLE
    assert not IDLE, "falsy, like an empty poll"
    assert "IDLE" in prefork.__all__


def queue_perform(work: list[str], states: list[int], worker_of: list) -> object:  # type: ignore[type-arg]
    """A perform that takes one item of ``work`` or returns IDLE, noting the slot's state."""

    def perform() -> object:
        worker = worker_of[0]
        states.append(worker.slot.state[0])
        if not work:
            if len(states) > 50:  # enough empty polls: as a QUIT would
                as_signal(worker, stop=True)
            return IDLE
        work.pop()
        return None

    return perform


def test_empty_polls_count_neither_as_performs_nor_toward_max_performs() -> None:
    work = ["a", "b", "c"]
    states: list[int] = []
    holder: list = []  # type: ignore[type-arg]
    perform = queue_perform(work, states, holder)
    worker, board, index = make_ready_worker(perform, max_performs=5)
    holder.append(worker)
    simple_loop(worker, perform)
    reading = board.read(index)
    assert reading.performs == 3, "three items of work, dozens of empty polls"
    assert len(states) > 50, "max_performs=5 did not end the loop: empty polls are free"
    assert worker.process.state.name == "STOPPING"


def test_the_slot_says_idle_after_an_empty_poll_and_busy_again_once_work_is_found() -> None:
    seen: list[tuple[str, int]] = []
    script = ["work", "idle", "idle", "work-with-heartbeat", "work", "idle"]

    def perform() -> object:
        step = script.pop(0) if script else "stop"
        seen.append((step, worker.slot.state[0]))
        if step == "stop":
            as_signal(worker, stop=True)
            return IDLE
        if step == "idle":
            return IDLE
        if step == "work-with-heartbeat":
            worker.context.heartbeat()
            seen.append(("after heartbeat", worker.slot.state[0]))
        return None

    worker, board, index = make_ready_worker(perform)
    simple_loop(worker, perform)
    assert seen == [
        ("work", PERFORMING),
        ("idle", PERFORMING),  # it could not know: the perform had not returned yet
        ("idle", IDLE_STATE),
        ("work-with-heartbeat", IDLE_STATE),
        ("after heartbeat", PERFORMING),  # work found: heartbeat() says busy
        ("work", PERFORMING),
        ("idle", PERFORMING),
        ("stop", IDLE_STATE),
    ]
    assert board.read(index).performs == 3
    assert board.read(index).state == IDLE_STATE


def test_a_busy_perform_after_an_idle_stretch_is_counted_without_a_heartbeat() -> None:
    script = [IDLE, IDLE, None, None]

    def perform() -> object:
        if not script:
            as_signal(worker, stop=True)
            return IDLE
        return script.pop(0)

    worker, board, index = make_ready_worker(perform, max_performs=2, stamp_performs=True)
    simple_loop(worker, perform)
    assert board.read(index).performs == 2
    assert worker.process.state.name == "STOPPING", "max_performs reached by busy ones"


def test_idle_performs_with_a_soft_timeout_are_not_counted_either() -> None:
    script = [IDLE, None, IDLE, IDLE, None]

    def perform() -> object:
        if not script:
            as_signal(worker, stop=True)
            return IDLE
        return script.pop(0)

    worker, board, index = make_ready_worker(perform, soft_timeout=5.0)
    simple_loop(worker, perform)
    assert board.read(index).performs == 2


def test_a_forked_perform_that_returns_idle_is_not_counted_nor_a_failure() -> None:
    read_end, write_end = os.pipe()

    def perform() -> object:
        os.write(write_end, b".")
        return IDLE if os.environ.get("PREFORK_TEST_IDLE") else None

    os.environ["PREFORK_TEST_IDLE"] = "1"
    try:
        worker, board, index = make_ready_worker(perform, strategy="forking", max_performs=2)
        forks = 0

        def failed(pid: int, status: int) -> None:
            raise AssertionError(f"an idle child is not a failure ({status})")

        worker.perform_child_failed = failed  # type: ignore[method-assign]

        def after_each_child() -> None:
            nonlocal forks
            forks += 1
            if forks == 4:
                os.environ.pop("PREFORK_TEST_IDLE", None)  # the next children find work

        worker.bound = BoundJob(lambda: None, perform, lambda: None, None,
                                lambda pid, status: after_each_child())
        forking_loop(worker, perform)
    finally:
        os.environ.pop("PREFORK_TEST_IDLE", None)
    assert os.read(read_end, 100) == b"......", "four idle children, then two busy ones"
    reading = board.read(index)
    assert reading.performs == 2 and reading.failures == 0
    assert worker.process.state.name == "STOPPING", "max_performs=2 counted busy ones only"


def test_exit_idle_is_not_an_ordinary_status() -> None:
    assert EXIT_IDLE not in (0, 1, 70)


class Taker(Job):
    """RQ's horse model: take in the worker, perform in the child, settle in the worker."""

    def __init__(self, items: list[str], write_end: int) -> None:
        self.items = items
        self.taken: str | None = None
        self.settled: list[tuple[str | None, int]] = []
        self.takes = 0
        self.write_end = write_end

    def take(self) -> object:
        self.takes += 1
        if not self.items:
            if self.takes > 20:
                as_signal(self.runtime, stop=True)
            return IDLE
        self.taken = self.items.pop(0)
        return self.taken

    def perform(self) -> None:
        os.write(self.write_end, f"{self.taken}:{os.getpid()}\n".encode())
        if self.taken == "crash":
            os._exit(3)

    def settle(self, pid: int, status: int) -> None:
        assert pid != os.getpid()
        self.settled.append((self.taken, status))
        self.taken = None


def test_the_forking_loop_takes_in_the_worker_performs_in_the_child_and_settles() -> None:
    read_end, write_end = os.pipe()
    job = Taker(["a", "crash", "b"], write_end)
    spec = job_spec(job)
    worker, board, index = make_ready_worker(job, strategy="forking", restart_backoff=0.01)
    job.runtime = worker  # type: ignore[attr-defined]
    worker.bound = spec.bind(worker.context)
    forking_loop(worker, job.perform)
    lines = os.read(read_end, 1000).decode().split()
    assert [line.split(":")[0] for line in lines] == ["a", "crash", "b"]
    assert all(line.split(":")[1] != str(os.getpid()) for line in lines), "in children"
    assert job.settled == [("a", 0), ("crash", 3 << 8), ("b", 0)], "settled in the worker"
    reading = board.read(index)
    assert reading.performs == 3 and reading.failures == 1
    assert job.takes > 20, "idle takes fork no child"
    assert reading.state == IDLE_STATE
