"""The worker's runtime and perform loops, run in this process (forking forks for real).

The runtime drives the worker process's machine (``prefork.child.process_machine``); these
tests check what it carries out: scoreboard stores, log lines, exit codes, and that the
machine is told about batches of performs, never about each perform."""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

import pytest

from prefork.child.process_machine import ProcessState
from prefork.child.runtime import Runtime, RuntimeOptions
from prefork.child.strategies import forking_loop, simple_loop
from prefork.job import job_spec
from prefork.posix.loop import Handoff
from prefork.posix.scoreboard import IDLE, PERFORMING, SPAWNING, Scoreboard, notice
from prefork.posix.signal_pipe import nonblocking_pipe

pytestmark = pytest.mark.timeout(20)


def make_worker(perform, **options) -> tuple[Runtime, Scoreboard, int]:  # type: ignore[no-untyped-def]
    board = Scoreboard()
    index = board.allocate()
    _notify_r, notify_w = os.pipe()
    spec = Handoff("default", 0, board.slot(index), notify_w, -1, os.getppid(), frozenset())
    options.setdefault("logger", logging.getLogger("test.worker"))
    worker = Runtime(spec, RuntimeOptions(job=job_spec(perform), **options))
    # never the real deadline here: it would KILL this test process in graceful_timeout
    worker.start_deadline = lambda: setattr(worker, "orphaned", True)  # type: ignore[method-assign]
    return worker, board, index


def make_ready_worker(perform, **options) -> tuple[Runtime, Scoreboard, int]:  # type: ignore[no-untyped-def]
    """A worker whose setup finished, as the perform loops find it."""
    worker, board, index = make_worker(perform, **options)
    worker.fire("setup_finished")
    return worker, board, index


def count_triggers(worker: Runtime) -> list[str]:
    """Record every trigger the runtime fires from now on (and still fire it)."""
    fired: list[str] = []
    fire = worker.fire

    def counting(trigger: str, *args: Any) -> None:
        fired.append(trigger)
        fire(trigger, *args)

    worker.fire = counting  # type: ignore[method-assign]
    return fired


def bound(worker: Runtime):  # type: ignore[no-untyped-def]
    return worker.options.job.bind(worker.context)


def as_signal(worker: Runtime, **flags: bool) -> None:
    """What a signal handler does: set flags, mark them pending, wake the worker."""
    for name, value in flags.items():
        setattr(worker.flags, name, value)
    worker.flags.pending = True
    if worker.wake_w >= 0:
        os.write(worker.wake_w, b"\0")


def with_wake_pipe(worker: Runtime) -> None:
    """The self-pipe the handlers would make (these tests install no handlers)."""
    worker.wake_r, worker.wake_w = nonblocking_pipe()


def test_the_simple_loop_stops_after_the_perform_in_which_quit_arrived() -> None:
    calls = []

    def perform() -> None:
        calls.append(worker.slot.state[0])
        if len(calls) == 3:  # as the QUIT handler would
            worker.flags.stop = True
            worker.flags.pending = True

    worker, board, index = make_ready_worker(perform)
    simple_loop(worker, perform)
    assert calls == [PERFORMING] * 3, "the state says performing during each perform"
    reading = board.read(index)
    assert reading.performs == 3
    assert reading.state == IDLE
    assert reading.heartbeat_at == 0.0, "no timeout, so no time stamped"
    assert worker.process.state is ProcessState.STOPPING


def test_max_performs_ends_the_loop_and_the_start_is_stamped_with_a_timeout() -> None:
    worker, board, index = make_ready_worker(lambda: None, max_performs=5, stamp_performs=True)
    simple_loop(worker, lambda: None)
    reading = board.read(index)
    assert reading.performs == 5
    assert reading.heartbeat_at > 0
    assert worker.process.state is ProcessState.STOPPING


def test_the_machine_hears_of_batches_never_of_each_perform() -> None:
    worker, board, index = make_ready_worker(lambda: None, max_performs=1000)
    fired = count_triggers(worker)
    simple_loop(worker, lambda: None)
    assert board.read(index).performs == 1000
    assert fired == ["batch_started", "batch_ended", "limit_reached"]


def test_a_signal_ends_a_batch_and_the_next_one_counts_on() -> None:
    def perform() -> None:
        if worker.slot.performs[0] == 4:  # the 5th perform; as USR1 would
            as_signal(worker, reopen=True)

    worker, board, index = make_ready_worker(perform, max_performs=10)
    reopened: list[bool] = []
    worker._reopen_logs = lambda: reopened.append(True)  # type: ignore[method-assign]
    fired = count_triggers(worker)
    simple_loop(worker, perform)
    assert board.read(index).performs == 10, "the budget is for the worker, not the batch"
    assert reopened == [True]
    assert fired == ["batch_started", "batch_ended", "reopen_requested", "batch_started",
                     "batch_ended", "limit_reached"]


def test_a_whole_life_runs_setup_performs_and_teardown_then_exits_0() -> None:
    class Job:
        def __init__(self) -> None:
            self.calls: list[str] = []

        def setup(self) -> None:
            self.calls.append("setup")

        def perform(self) -> None:
            self.calls.append("perform")

        def teardown(self) -> None:
            self.calls.append("teardown")

    job = Job()
    worker, board, index = make_worker(job, max_performs=2)
    notify_r, notify_w = os.pipe()
    worker.spec = worker.spec._replace(notify_fd=notify_w)
    assert worker.live(bound(worker)) == 0
    assert job.calls == ["setup", "perform", "perform", "teardown"]
    assert os.read(notify_r, 10) == notice(index), "its slot's notice says setup finished"
    assert board.read(index).state == IDLE
    assert worker.process.state is ProcessState.EXITED


def test_a_perform_that_raises_ends_the_worker_with_status_1(caplog) -> None:
    def perform() -> None:
        raise ValueError("boom")

    worker, _board, _index = make_worker(perform)
    with caplog.at_level(logging.ERROR, logger="test.worker"):
        assert worker.live(bound(worker)) == 1
    assert "perform failed" in caplog.text and "ValueError: boom" in caplog.text
    assert worker.process.state is ProcessState.EXITED


def test_a_setup_that_raises_fails_before_any_perform(caplog) -> None:
    class Job:
        def setup(self) -> None:
            raise RuntimeError("no database")

        def perform(self) -> None:
            raise AssertionError("not reached")

    worker, board, index = make_worker(Job())
    with caplog.at_level(logging.ERROR, logger="test.worker"):
        assert worker.live(bound(worker)) == 1
    assert "setup failed" in caplog.text
    assert board.read(index).state == SPAWNING, "setup never finished"


def test_an_after_fork_hook_that_raises_fails_before_setup(caplog) -> None:
    class Job:
        def setup(self) -> None:
            raise AssertionError("not reached")

        def perform(self) -> None:
            raise AssertionError("not reached")

    def hook(context: object) -> None:
        raise RuntimeError("hook broke")

    worker, _board, _index = make_worker(Job(), after_fork=hook)
    with caplog.at_level(logging.ERROR, logger="test.worker"):
        assert worker.live(bound(worker)) == 1
    assert "hook after_fork raised" in caplog.text and "hook broke" in caplog.text


def test_a_teardown_that_raises_ends_the_worker_with_status_1(caplog) -> None:
    class Job:
        def perform(self) -> None:
            pass

        def teardown(self) -> None:
            raise RuntimeError("cannot close")

    worker, _board, _index = make_worker(Job(), max_performs=1)
    with caplog.at_level(logging.ERROR, logger="test.worker"):
        assert worker.live(bound(worker)) == 1
    assert "teardown failed" in caplog.text and "cannot close" in caplog.text


def test_usr2_holds_between_performs_until_cont(caplog) -> None:
    def perform() -> None:
        if worker.slot.performs[0] == 1:  # the 2nd perform; as USR2 would
            as_signal(worker, hold=True)
            threading.Timer(0.05, as_signal, (worker,), {"hold": False}).start()

    worker, board, index = make_ready_worker(perform, max_performs=3)
    worker._lifeline = None  # no lifeline to watch: the handoff's fd is -1
    with_wake_pipe(worker)
    fired = count_triggers(worker)
    with caplog.at_level(logging.INFO, logger="test.worker"):
        simple_loop(worker, perform)
    assert board.read(index).performs == 3
    assert "holding (USR2); CONT resumes" in caplog.text and "resuming (CONT)" in caplog.text
    assert fired == ["batch_started", "batch_ended", "hold_requested", "resume_requested",
                     "batch_started", "batch_ended", "limit_reached"]


def test_a_master_lost_while_holding_stops_the_worker_gracefully(caplog) -> None:
    def perform() -> None:
        as_signal(worker, hold=True)
        threading.Timer(0.05, os.close, (lifeline_w,)).start()  # the master dies

    lifeline_r, lifeline_w = os.pipe()
    worker, board, index = make_ready_worker(perform)
    worker._lifeline = lifeline_r
    with_wake_pipe(worker)
    fired = count_triggers(worker)
    with caplog.at_level(logging.INFO, logger="test.worker"):
        simple_loop(worker, perform)
    assert board.read(index).performs == 1
    assert caplog.text.count("is gone; stopping") == 1
    assert "resuming" not in caplog.text
    assert worker.flags.stop, "the job's worker.stopping says so too"
    assert fired == ["batch_started", "batch_ended", "hold_requested", "master_lost",
                     "stop_requested"]
    assert worker.process.state is ProcessState.STOPPING


def test_the_forking_loop_runs_each_perform_in_a_new_process(caplog) -> None:
    read_end, write_end = os.pipe()

    def perform() -> None:
        os.write(write_end, f"{os.getpid()}\n".encode())
        if os.environ.get("FAIL_PERFORM"):
            raise ValueError("in the child")

    worker, board, index = make_ready_worker(perform, strategy="forking", max_performs=3)
    fired = count_triggers(worker)
    forking_loop(worker, perform)
    pids = os.read(read_end, 1000).decode().split()
    assert len(set(pids)) == 3 and str(os.getpid()) not in pids
    assert board.read(index).performs == 3
    assert fired == ["batch_started", "batch_ended", "limit_reached"], "per batch only"
    os.environ["FAIL_PERFORM"] = "1"
    try:
        worker, board, index = make_ready_worker(perform, strategy="forking", max_performs=2)
        with caplog.at_level(logging.ERROR, logger="test.worker"):
            forking_loop(worker, perform)
    finally:
        del os.environ["FAIL_PERFORM"]
    assert "failed" not in caplog.text, "each child logged its own traceback: said once"
    assert board.read(index).performs == 2, "the loop goes on"
    assert board.read(index).failures == 2, "each failed perform is counted"
    assert worker.process.state is ProcessState.STOPPING


def test_a_forking_batch_goes_on_counting_after_a_signal() -> None:
    read_end, write_end = os.pipe()

    def perform() -> None:
        os.write(write_end, b".")

    def after_perform(pid: int, status: int) -> None:  # not called: no child fails
        raise AssertionError((pid, status))

    worker, board, index = make_ready_worker(perform, strategy="forking", max_performs=4)
    worker.perform_child_failed = after_perform  # type: ignore[method-assign]
    fired = count_triggers(worker)
    as_signal(worker, reopen=True)
    worker._reopen_logs = lambda: None  # type: ignore[method-assign]
    forking_loop(worker, perform)
    assert os.read(read_end, 100) == b"...."
    assert board.read(index).performs == 4
    assert fired == ["reopen_requested", "batch_started", "batch_ended", "limit_reached"]


def test_each_worker_starts_its_machine_afresh() -> None:
    first, _board, _index = make_worker(lambda: None, max_performs=1)
    assert first.live(bound(first)) == 0
    assert first.process.state is ProcessState.EXITED
    second, _board, _index = make_worker(lambda: None, strategy="forking")
    assert second.process is first.process, "one model per process, made before any fork"
    assert second.process.state is ProcessState.SETTING_UP
    assert second.process.forks_performs() and not second.process.master_known_gone()


def test_the_failures_field_of_a_slot_is_written_by_the_worker_and_read_by_the_master(
) -> None:
    board = Scoreboard(segment_slots=2)
    first, second = board.allocate(), board.allocate()
    board.slot(first).failures[0] = 7
    assert board.read(first).failures == 7 and board.read(second).failures == 0
    assert board.read(first).performs == 0, "a field of its own"
    board.release(first)
    assert board.allocate() == first and board.read(first).failures == 0, "reset"


def test_failed_perform_children_back_off_and_a_success_ends_the_run() -> None:
    failing = {1, 2, 3}  # the 1st, 2nd and 3rd performs fail; the 4th succeeds

    def perform() -> None:
        if worker.slot.performs[0] + 1 in failing:
            os._exit(5)

    worker, board, index = make_ready_worker(
        perform, strategy="forking", max_performs=5, restart_backoff=0.05,
        restart_backoff_max=0.05)
    waits: list[float] = []
    worker._pause = waits.append  # type: ignore[method-assign]
    fired = count_triggers(worker)
    forking_loop(worker, perform)
    assert board.read(index).failures == 3
    assert waits == [0.0, 0.05, 0.05], "the first at once, then restart_backoff (capped)"
    assert fired.count("perform_child_recovered") == 1
    assert worker.process.failures_in_a_row == 0


def test_the_soft_timeout_raises_perform_timeout_inside_a_simple_perform() -> None:
    import signal

    from prefork import PerformTimeout

    caught: list[str] = []

    def perform() -> None:
        try:
            threading.Event().wait(5)
        except PerformTimeout as timeout:
            caught.append(str(timeout))

    def raise_timeout(signo: int, frame: object) -> None:  # the runtime's handler
        raise PerformTimeout("soft")

    worker, board, index = make_ready_worker(perform, max_performs=2, soft_timeout=0.05)
    previous = signal.signal(signal.SIGALRM, raise_timeout)
    try:
        simple_loop(worker, perform)
    finally:
        signal.signal(signal.SIGALRM, previous)
    assert caught == ["soft", "soft"], "caught and returned: each perform is done"
    assert board.read(index).performs == 2
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0), "cleared after the perform"
