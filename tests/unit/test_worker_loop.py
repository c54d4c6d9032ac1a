"""The worker's perform loops, run in this process (the forking one forks for real)."""

from __future__ import annotations

import logging
import os

import pytest

from prefork.child.runtime import Runtime, RuntimeOptions
from prefork.job import job_spec
from prefork.posix.loop import Handoff
from prefork.posix.scoreboard import IDLE, PERFORMING, SPAWNING, Scoreboard

pytestmark = pytest.mark.timeout(20)


def make_worker(perform, **options) -> tuple[Runtime, Scoreboard, int]:  # type: ignore[no-untyped-def]
    board = Scoreboard()
    index = board.allocate()
    _notify_r, notify_w = os.pipe()
    spec = Handoff("default", 0, board.slot(index), notify_w, -1, os.getppid(), frozenset())
    options.setdefault("logger", logging.getLogger("test.worker"))
    worker = Runtime(spec, RuntimeOptions(job=job_spec(perform), **options))
    return worker, board, index


def test_the_simple_loop_stops_after_the_perform_in_which_quit_arrived() -> None:
    calls = []

    def perform() -> None:
        calls.append(worker.slot.state[0])
        if len(calls) == 3:  # as the QUIT handler would
            worker.flags.stop = True
            worker.flags.pending = True

    worker, board, index = make_worker(perform)
    worker._simple_loop(perform)
    assert calls == [PERFORMING] * 3, "the state says performing during each perform"
    reading = board.read(index)
    assert reading.performs == 3
    assert reading.state == IDLE
    assert reading.heartbeat_at == 0.0, "no timeout, so no time stamped"


def test_max_performs_ends_the_loop_and_the_start_is_stamped_with_a_timeout() -> None:
    worker, board, index = make_worker(lambda: None, max_performs=5, stamp_performs=True)
    worker._simple_loop(lambda: None)
    reading = board.read(index)
    assert reading.performs == 5
    assert reading.heartbeat_at > 0


def test_a_perform_that_raises_ends_the_worker_with_status_1(caplog) -> None:
    def perform() -> None:
        raise ValueError("boom")

    worker, _board, _index = make_worker(perform)
    with caplog.at_level(logging.ERROR, logger="test.worker"):
        assert worker._live(worker.options.job.bind(worker.context)) == 1
    assert "perform failed" in caplog.text and "ValueError: boom" in caplog.text


def test_a_setup_that_raises_fails_before_any_perform(caplog) -> None:
    class Job:
        def setup(self) -> None:
            raise RuntimeError("no database")

        def perform(self) -> None:
            raise AssertionError("not reached")

    worker, board, index = make_worker(Job())
    with caplog.at_level(logging.ERROR, logger="test.worker"):
        assert worker._live(worker.options.job.bind(worker.context)) == 1
    assert "setup failed" in caplog.text
    assert board.read(index).state == SPAWNING, "setup never finished"


def test_the_forking_loop_runs_each_perform_in_a_new_process(caplog) -> None:
    read_end, write_end = os.pipe()

    def perform() -> None:
        os.write(write_end, f"{os.getpid()}\n".encode())
        if os.environ.get("FAIL_PERFORM"):
            raise ValueError("in the child")

    worker, board, index = make_worker(perform, strategy="forking", max_performs=3)
    worker._forking_loop(perform)
    pids = os.read(read_end, 1000).decode().split()
    assert len(set(pids)) == 3 and str(os.getpid()) not in pids
    assert board.read(index).performs == 3
    os.environ["FAIL_PERFORM"] = "1"
    try:
        worker, board, index = make_worker(perform, strategy="forking", max_performs=2)
        with caplog.at_level(logging.ERROR, logger="test.worker"):
            worker._forking_loop(perform)
    finally:
        del os.environ["FAIL_PERFORM"]
    assert caplog.text.count("failed (exit status 1)") == 2, "logged, and the loop goes on"
    assert board.read(index).performs == 2
