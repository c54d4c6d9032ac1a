"""Recycling as the worker sees it: its drawn limit, its memory checks, and that it asks
for a replacement and performs on (it never stops by itself)."""

from __future__ import annotations

import logging
import os
import subprocess
import time

import pytest
from test_child_runtime import count_triggers, make_ready_worker

from prefork.child.process_machine import ProcessState
from prefork.child.recycling import SelfCheck
from prefork.child.strategies import forking_loop, simple_loop
from prefork.core import PoolConfig
from prefork.core.events import MemorySampled
from prefork.posix.memory import MemorySampler, memory_figure, resident_mib, unique_mib
from prefork.posix.scoreboard import IDLE, Scoreboard, notice

pytestmark = pytest.mark.timeout(20)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


# the drawn limit ------------------------------------------------------------------------


def test_each_worker_draws_its_own_share_of_the_jitter() -> None:
    draws = iter([0, 3, 7])
    checks = [SelfCheck(100, 7, None, draw=lambda low, high: next(draws)) for _ in range(3)]
    assert [check.limit for check in checks] == [100, 103, 107]
    assert checks[2].budget(0) == 107
    assert checks[2].due(106) is None
    due = checks[2].due(107)
    assert due is not None and due.reason == "max_performs"
    assert due.why == "did 107 performs (max_performs 100 + 7 of jitter 7)"
    assert checks[2].due(108) is None and checks[2].budget(108) is None, "asks once"


def test_the_jitter_is_within_its_bounds_with_the_real_draw() -> None:
    limits = {SelfCheck(10, 3, None).limit for _ in range(200)}
    assert limits <= {10, 11, 12, 13} and len(limits) > 1


def test_without_limits_nothing_is_due_and_batches_are_unbounded() -> None:
    check = SelfCheck(None, 5, None)
    assert check.budget(0) is None and check.due(10**6) is None


# memory checks --------------------------------------------------------------------------


def test_memory_is_measured_at_most_every_check_every_seconds() -> None:
    clock, readings = Clock(), []

    def measure(limit: float) -> float:
        readings.append(clock.now)
        return 50.0

    check = SelfCheck(None, 0, 100, check_every=1.0, clock=clock, measure=measure)
    assert check.budget(0) == 1, "one perform first, to learn the rate"
    clock.now = 0.001  # 1 perform took 1 ms: early, no reading
    assert check.due(1) is None and readings == []
    assert check.budget(1) == 999, "the next batch runs to about the time it is due"
    clock.now = 1.0
    assert check.due(1000) is None and readings == [1.0]
    assert check.budget(1000) == 1000, "1000 performs a second: 1000 before the next"
    clock.now = 1.5  # a signal ended the batch half way
    assert check.due(1500) is None and readings == [1.0]
    assert check.budget(1500) == 500


def test_over_max_memory_the_worker_asks_once_with_its_figure() -> None:
    clock = Clock()
    check = SelfCheck(None, 0, 200, clock=clock, measure=lambda limit: 212.4)
    clock.now = 2.0
    due = check.due(5)
    assert due is not None and due.reason == "max_memory" and due.memory_mib == 212.4
    assert due.why == "uses 212 MiB USS, over max_memory 200 MiB"
    clock.now = 4.0
    assert check.due(9) is None and check.budget(9) is None


def test_slow_performs_are_checked_after_each_one() -> None:
    clock = Clock()
    check = SelfCheck(None, 0, 100, clock=clock, measure=lambda limit: 10.0)
    clock.now = 3.0  # one perform took 3 s
    assert check.due(1) is None
    assert check.budget(1) == 1


def test_the_worker_s_memory_figures_are_its_own() -> None:
    rss, uss = resident_mib(), unique_mib()
    assert rss is not None and uss is not None
    assert 0 < uss <= rss, "unique pages are resident pages"
    assert unique_mib(2**22 + 12345) is None, "no such process"


def test_the_figure_is_the_cheap_rss_under_the_limit_and_the_uss_over_it() -> None:
    # a sleeping process, whose pages do not change between two readings (this one's do:
    # reading its own figures allocates)
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        wait_until_asleep(sleeper.pid)
        rss, uss = resident_mib(sleeper.pid), unique_mib(sleeper.pid)
        assert rss is not None and uss is not None and uss < rss
        assert memory_figure(rss * 10, sleeper.pid) == rss, "far under the limit: RSS"
        assert memory_figure(0.001, sleeper.pid) == uss, "over it: USS"
    finally:
        sleeper.kill()
        sleeper.wait()


def wait_until_asleep(pid: int) -> None:
    """Until ``pid`` sleeps in the program it was started with (a forked child runs Python
    until it execs, then the loader maps and touches pages: its memory changes meanwhile)."""
    for _ in range(500):
        with open(f"/proc/{pid}/stat") as stat:
            state = stat.read().rsplit(")", 1)[1].split()[0]
        with open(f"/proc/{pid}/comm") as comm:
            if comm.read().strip() == "sleep" and state == "S":
                return
        time.sleep(0.01)
    raise AssertionError(f"pid {pid} never slept in sleep")


# the runtime: it asks and performs on ---------------------------------------------------


@pytest.mark.parametrize("loop", [simple_loop, forking_loop], ids=["simple", "forking"])
def test_at_its_limit_a_worker_asks_for_a_replacement_and_performs_on(loop) -> None:  # type: ignore[no-untyped-def]
    """Recycled at 5 performs, it performs on; the hard budget of 8 (what ends these
    tests, where no master sends QUIT) ends it."""
    worker, board, index = make_ready_worker(lambda: None,
                                             strategy=loop.__name__.split("_")[0],
                                             recycle_after=5, max_performs=8)
    fired = count_triggers(worker)
    loop(worker, lambda: None)
    reading = board.read(index)
    assert reading.recycle_reason == "max_performs"
    assert reading.performs == 8, "it performed on past its limit"
    assert fired == ["batch_started", "batch_ended", "recycle_due", "batch_started",
                     "batch_ended", "limit_reached"], "per batch only, and asked once"
    assert worker.process.state is ProcessState.STOPPING


def test_the_ask_is_the_slot_s_notice_on_the_notify_pipe_and_a_line() -> None:
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger("test.recycling.ask")
    logger.addHandler(Keep())
    logger.setLevel(logging.INFO)
    notify_r, notify_w = os.pipe()
    os.set_blocking(notify_r, False)

    def perform() -> None:
        if worker.slot.recycle[0]:
            worker.flags.stop = worker.flags.pending = True

    worker, board, index = make_ready_worker(perform, recycle_after=3, logger=logger)
    worker.spec = worker.spec._replace(notify_fd=notify_w)
    simple_loop(worker, perform)
    assert os.read(notify_r, 16) == notice(index), "the notice names its slot"
    assert any("did 3 performs (max_performs 3): asking for a replacement" in r.getMessage()
               for r in records)
    assert board.read(index).state == IDLE
    os.close(notify_r)
    os.close(notify_w)


def test_a_worker_over_max_memory_writes_its_figure_in_its_slot() -> None:
    def perform() -> None:
        if worker.slot.recycle[0]:
            worker.flags.stop = worker.flags.pending = True

    worker, board, index = make_ready_worker(perform, max_memory=100)
    clock = Clock()
    worker.recycling = SelfCheck(None, 0, 100, clock=clock, measure=lambda limit: 150.0)

    def tick() -> None:
        clock.now += 0.6  # each perform takes 0.6 s
        perform()

    simple_loop(worker, tick)
    reading = board.read(index)
    assert (reading.recycle_reason, reading.memory_mib) == ("max_memory", 150.0)
    # the first check was due after the 2nd perform (1.2 s); the 3rd saw the ask
    assert reading.performs == 3


# the scoreboard and the master's samples ------------------------------------------------


def test_a_fresh_slot_asks_nothing_and_a_reused_one_forgets_the_ask() -> None:
    board = Scoreboard(segment_slots=2)
    index = board.allocate()
    slot = board.slot(index)
    slot.memory[0], slot.recycle[0] = 321.0, 2
    assert (board.read(index).recycle_reason, board.read(index).memory_mib) == (
        "max_memory", 321.0)
    board.release(index)
    again = board.allocate()
    assert again == index
    assert (board.read(again).recycle, board.read(again).memory_mib) == (0, 0.0)


def test_the_master_samples_only_pools_with_max_memory_at_a_low_rate() -> None:
    measured: list[int | None] = []

    def measure(limit: float, pid: int | None) -> float:
        measured.append(pid)
        return 42.0

    sampler = MemorySampler(every=2.0, measure=measure)
    plain = PoolConfig.of(groups={"a": 1, "b": 1})
    assert sampler.collect([(10, "a"), (11, "b")], plain, 0.0) == []
    assert sampler.next_at is None, "no max_memory: no wake-ups at all"
    config = PoolConfig.of(groups={"a": {"workers": 1, "max_memory": 64}, "b": 1})
    assert sampler.collect([(10, "a"), (11, "b")], config, 0.0) == []
    assert sampler.next_at == 2.0
    assert sampler.collect([(10, "a"), (11, "b")], config, 1.0) == []
    assert sampler.collect([(10, "a"), (11, "b")], config, 2.0) == [
        MemorySampled(10, 42.0, at=2.0)]
    assert measured == [10] and sampler.next_at == 4.0


