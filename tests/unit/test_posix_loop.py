"""The event loop with real forks: the order of events, the baseline, the races."""

from __future__ import annotations

import logging
import os
import signal
import time
from collections import Counter

import pytest

from prefork.core.events import ChildExited, Event, Forked, Observed, StartWorker, StopAll
from prefork.core.settings import PoolConfig
from prefork.core.supervisor import Supervisor
from prefork.core.worker_machine import WorkerState
from prefork.posix.loop import Handoff, PosixLoop
from prefork.posix.scoreboard import IDLE, notice

pytestmark = pytest.mark.timeout(20)


class Recording(Supervisor):
    """A supervisor that remembers every event it was handed."""

    def __init__(self, config: PoolConfig) -> None:
        super().__init__(config)
        self.seen: list[Event] = []

    def handle(self, event):  # type: ignore[no-untyped-def]
        self.seen.append(event)
        return super().handle(event)


def ready_then_wait_for_quit(spec: Handoff) -> int:
    """A worker whose setup is instant: IDLE and notified at once, then QUIT ends it."""
    spec.board_slot.state[0] = IDLE
    os.write(spec.notify_fd, b"!")
    # blocked since the fork, so sigtimedwait takes it; give up after a while so that a
    # failing test leaves nothing behind
    signal.sigtimedwait({signal.SIGQUIT}, 10)
    return 0


def ready_then_count_a_perform_on_usr1(spec: Handoff) -> int:
    """Ready (by its own notice); on USR1 one perform counted and noticed; QUIT ends it."""
    spec.board_slot.state[0] = IDLE
    os.write(spec.notify_fd, notice(spec.board_slot.index))
    signal.sigtimedwait({signal.SIGUSR1}, 10)
    spec.board_slot.performs[0] = 1
    os.write(spec.notify_fd, notice(spec.board_slot.index))
    signal.sigtimedwait({signal.SIGQUIT}, 10)
    return 0


def counting_reads(loop: PosixLoop, monkeypatch) -> list[int]:  # type: ignore[no-untyped-def]
    """The scoreboard indexes the loop reads from now on, in order."""
    reads: list[int] = []
    read = loop.board.read

    def counted(index: int):  # type: ignore[no-untyped-def]
        reads.append(index)
        return read(index)

    monkeypatch.setattr(loop.board, "read", counted)
    return reads


def all_idle(loop: PosixLoop, pids: list[int]):  # type: ignore[no-untyped-def]
    return lambda: all(loop.supervisor.worker_by_pid(pid).state is WorkerState.IDLE
                       for pid in pids)


def test_a_wake_up_reads_only_the_slots_of_the_workers_that_gave_notice(monkeypatch) -> None:
    """A worker's notice names its slot: the master looks at that slot, not at every
    worker's (a pool of a thousand would read a thousand slots per wake-up)."""
    loop = make_loop(ready_then_count_a_perform_on_usr1)
    for _ in range(3):
        loop.feed(StartWorker())
    pids = list(loop.workers)
    loop.wait_until(all_idle(loop, pids))
    reads = counting_reads(loop, monkeypatch)
    speaker = loop.workers[pids[1]]
    os.kill(speaker.pid, signal.SIGUSR1)
    loop.wait_until(lambda: loop.supervisor.worker_by_pid(speaker.pid).performs == 1)
    assert reads == [speaker.index]
    loop.feed(StopAll())
    loop.wait_until(lambda: False)
    assert loop.exit_code == 0
    loop.close()


def test_a_notice_that_names_no_slot_has_every_slot_read(monkeypatch) -> None:
    """Anything else on the notify pipe (a byte that is no slot's notice, or a pipe that
    was full, when notices may have been lost) makes the master look at everyone."""
    loop = make_loop(ready_then_wait_for_quit)  # its notice is b"!"
    for _ in range(3):
        loop.feed(StartWorker())
    pids = list(loop.workers)
    loop.wait_until(all_idle(loop, pids))
    reads = counting_reads(loop, monkeypatch)
    os.write(loop.notify_w, b"!")
    loop.turn(block=True)
    assert sorted(reads) == sorted(worker.index for worker in loop.workers.values())
    loop.feed(StopAll())
    loop.wait_until(lambda: False)
    loop.close()


def test_the_timed_scan_reads_every_slot(monkeypatch) -> None:
    """With a perform timeout, every worker's slot is read once per scan: that is how the
    core learns that a perform began, whoever gave notice."""
    loop = make_loop(ready_then_count_a_perform_on_usr1, timeout=0.2)
    for _ in range(2):
        loop.feed(StartWorker())
    pids = list(loop.workers)
    loop.wait_until(all_idle(loop, pids))
    reads = counting_reads(loop, monkeypatch)
    while not reads:  # nothing else happens: the next wake-up is the scan's
        loop.turn(block=True)
    assert sorted(reads) == sorted(worker.index for worker in loop.workers.values())
    loop.feed(StopAll())
    loop.wait_until(lambda: False)
    loop.close()


def test_an_event_that_forks_writes_its_log_lines_after_the_fork() -> None:
    """A respawn's lines (the death, the error) wait until the replacement is forked: the
    new worker starts while the master writes them, not after."""
    forks_when_logged: dict[str, int] = {}

    class Recorder(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            forks_when_logged[record.getMessage()] = len(loop._forks)

    logger = logging.getLogger("test.forks-first")
    logger.addHandler(Recorder())
    logger.setLevel(logging.INFO)
    logger.propagate = False
    config = PoolConfig.of(workers=0, setup_timeout=None, graceful_timeout=5)
    loop = PosixLoop(Recording(config), ready_then_wait_for_quit, logger,
                     handle_signals=False, set_titles=False)
    LOOPS.append(loop)
    loop.boot()
    loop.feed(StartWorker())
    [pid] = loop.workers
    loop.wait_until(all_idle(loop, [pid]))
    os.kill(pid, signal.SIGKILL)
    loop.wait_until(lambda: pid not in loop.workers)
    [death] = [line for line in forks_when_logged if "killed by signal 9" in line]
    assert forks_when_logged[death] == 1, "written once the replacement was forked"
    loop.feed(StopAll())
    loop.wait_until(lambda: False)
    loop.close()


def test_the_log_lines_of_an_event_wait_for_its_forks_but_not_for_its_signals() -> None:
    """A timeout's "dumping its stack" line must come before the stack the ABRT makes
    the worker write, even when the same event forks the replacement."""
    from prefork.core.effects import Kill, Log, Spawn
    from prefork.core.signals import Sig
    from prefork.posix.loop import _forks_first

    timed_out, dumping = Log("info", "performing -> stopping"), Log("error", "dumping")
    abrt, spawn, spawned = Kill(7, Sig.ABRT), Spawn("default", 0), Log("info", "spawned")
    assert _forks_first([timed_out, dumping, abrt, spawn, spawned]) == [
        timed_out, dumping, abrt, spawn, spawned]
    assert _forks_first([timed_out, spawn, abrt, spawned]) == [
        spawn, timed_out, abrt, spawned]
    assert _forks_first([timed_out, abrt]) == [timed_out, abrt], "no fork: as it came"


def test_a_due_deadline_has_every_slot_read_first(monkeypatch) -> None:
    """The core judges a deadline (a perform's timeout) on the readings of that turn: a
    heartbeat written since the last look must be seen before the ``Tick``."""
    loop = make_loop(ready_then_wait_for_quit)
    for _ in range(2):
        loop.feed(StartWorker())
    pids = list(loop.workers)
    loop.wait_until(all_idle(loop, pids))
    reads = counting_reads(loop, monkeypatch)
    loop.wake_at = time.monotonic()  # as the core's WakeAt would set it
    loop.turn(block=True)
    assert sorted(reads) == sorted(worker.index for worker in loop.workers.values())
    loop.feed(StopAll())
    loop.wait_until(lambda: False)
    loop.close()


def test_a_status_request_looks_at_every_worker_first(monkeypatch) -> None:
    loop = make_loop(ready_then_wait_for_quit)
    for _ in range(2):
        loop.feed(StartWorker())
    pids = list(loop.workers)
    loop.wait_until(all_idle(loop, pids))
    quiet = loop.workers[pids[0]]
    loop.board.slot(quiet.index).performs[0] = 7  # counted, no notice given
    loop.ask_status()
    assert loop.supervisor.worker_by_pid(quiet.pid).performs == 7
    loop.feed(StopAll())
    loop.wait_until(lambda: False)
    loop.close()


def perform_three_then_exit(spec: Handoff) -> int:
    spec.board_slot.performs[0] = 3
    spec.board_slot.state[0] = IDLE
    return 0


LOOPS: list[PosixLoop] = []


@pytest.fixture(autouse=True)
def kill_leftover_workers():  # type: ignore[no-untyped-def]
    """A failing test must not leave its workers behind."""
    yield
    while LOOPS:
        loop = LOOPS.pop()
        for pid in list(loop.children.live):
            loop.children.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            loop.children.forget(pid)
        loop.close()


def make_loop(worker_main, **pool) -> PosixLoop:  # type: ignore[no-untyped-def]
    config = PoolConfig.of(workers=0, setup_timeout=None, graceful_timeout=5, **pool)
    loop = PosixLoop(Recording(config), worker_main, logging.getLogger("test"),
                     handle_signals=False, set_titles=False)
    LOOPS.append(loop)
    loop.boot()
    return loop


def test_a_worker_ready_before_the_master_looks_is_still_seen(monkeypatch) -> None:
    """Regression: the baseline reading was once taken after fork(), racing the child."""
    loop = make_loop(ready_then_wait_for_quit)
    fork = loop.children.fork

    def slow_parent(child_main):  # type: ignore[no-untyped-def]
        pid = fork(child_main)
        time.sleep(0.2)  # the child finishes its setup before the parent looks
        return pid

    monkeypatch.setattr(loop.children, "fork", slow_parent)
    for _ in range(3):
        loop.feed(StartWorker())
    pids = list(loop.workers)
    supervisor = loop.supervisor
    loop.wait_until(lambda: all(
        supervisor.worker_by_pid(pid).state is WorkerState.IDLE for pid in pids
    ))
    loop.feed(StopAll())
    loop.wait_until(lambda: False)
    assert loop.exit_code == 0
    loop.close()


def test_a_dying_workers_final_count_comes_with_its_exit() -> None:
    loop = make_loop(perform_three_then_exit, max_performs=3)
    loop.feed(StartWorker())
    [pid] = loop.workers
    loop.wait_until(lambda: pid not in loop.workers)
    seen = [e for e in loop.supervisor.seen if getattr(e, "pid", None) == pid]
    assert isinstance(seen[-1], ChildExited)
    assert (seen[-1].status, seen[-1].performs) == (0, 3)
    loop.feed(StopAll())
    loop.wait_until(lambda: False)
    loop.close()


def test_nothing_is_handed_to_the_core_after_exit() -> None:
    loop = make_loop(ready_then_wait_for_quit)
    loop.feed(StopAll())
    assert loop.exit_code == 0
    loop.feed(StartWorker())  # the core is stopped: this must not reach it
    assert not isinstance(loop.supervisor.seen[-1], StartWorker)
    loop.close()


def test_signals_are_never_sent_to_a_pid_that_is_not_a_live_worker(caplog) -> None:
    loop = make_loop(ready_then_wait_for_quit)
    from prefork.core.effects import Kill
    from prefork.core.signals import Sig

    with caplog.at_level(logging.WARNING, logger="test"):
        loop._carry_out(Kill(os.getpid(), Sig.KILL))
    assert "not a live worker" in caplog.text
    loop.feed(StopAll())
    loop.close()


class RaisingAfterSpawn(Recording):
    """A supervisor whose StartWorker effects end with one the adapter cannot carry out."""

    def handle(self, event):  # type: ignore[no-untyped-def]
        effects = super().handle(event)
        return [*effects, "not an effect"] if isinstance(event, StartWorker) else effects


def test_a_fork_is_recorded_even_when_a_later_effect_of_its_event_raises() -> None:
    """The parent's share of a fork waits for the end of the event, but never goes missing."""
    config = PoolConfig.of(workers=0, setup_timeout=None, graceful_timeout=5)
    loop = PosixLoop(RaisingAfterSpawn(config), ready_then_wait_for_quit,
                     logging.getLogger("test"), handle_signals=False, set_titles=False)
    LOOPS.append(loop)
    loop.boot()
    with pytest.raises(TypeError, match="cannot carry out"):
        loop.feed(StartWorker())
    [pid] = loop.workers
    assert pid in loop.workers and pid in loop.children.live
    if loop.children.use_pidfd:
        assert loop.children.live[pid].pidfd is not None
    assert os.getpgid(pid) == pid, "it leads its own process group"


def test_the_forks_of_one_event_are_answered_in_order_before_anything_else() -> None:
    config = PoolConfig.of(workers=3, setup_timeout=None, graceful_timeout=5)
    loop = PosixLoop(Recording(config), ready_then_wait_for_quit, logging.getLogger("test"),
                     handle_signals=False, set_titles=False)
    LOOPS.append(loop)
    loop.boot()
    after_boot = loop.supervisor.seen[1:4]
    assert [type(e) for e in after_boot] == [Forked] * 3
    assert [e.pid for e in after_boot] == list(loop.workers)
    assert [e.slot for e in after_boot] == [0, 1, 2]
    assert set(loop.workers) == set(loop.children.live)
    assert not hasattr(loop, "forked"), "no list of every pid ever forked"
    loop.feed(StopAll())
    loop.wait_until(lambda: False)
    assert loop.exit_code == 0
    loop.close()


def test_each_master_hook_runs_once_per_occasion() -> None:
    """Whoever asks for a hook (the loop today, the core's RunHook tomorrow), it runs
    once: twice would mean both are asking."""
    counts: Counter[str] = Counter()
    hooks = {name: (lambda *args, name=name: counts.update([name]))
             for name in ("before_fork", "on_worker_exit", "when_ready")}
    config = PoolConfig.of(workers=2, setup_timeout=None, graceful_timeout=5)
    loop = PosixLoop(Recording(config), ready_then_wait_for_quit, logging.getLogger("test"),
                     handle_signals=False, set_titles=False, hooks=hooks)
    LOOPS.append(loop)
    loop.boot()
    loop.feed(StopAll())
    loop.wait_until(lambda: False)
    assert counts == {"before_fork": 2, "when_ready": 1, "on_worker_exit": 2}
    loop.close()


def ask_for_a_replacement_then_wait_for_quit(spec: Handoff) -> int:
    """A worker that is ready at once and asks to be recycled (max_memory, 99 MiB)."""
    spec.board_slot.memory[0] = 99.0
    spec.board_slot.recycle[0] = 2
    spec.board_slot.state[0] = IDLE
    os.write(spec.notify_fd, b"!")
    signal.sigtimedwait({signal.SIGQUIT}, 10)
    return 0


def test_a_slot_that_asks_to_be_recycled_reaches_the_core_and_its_successor_comes_first(
        ) -> None:

    loop = make_loop(ask_for_a_replacement_then_wait_for_quit, max_memory=64)
    loop.feed(StartWorker())
    [first] = loop.workers
    loop.wait_until(lambda: len(loop.workers) == 2)  # the replacement is forked
    asked = [e for e in loop.supervisor.seen if isinstance(e, Observed) and e.pid == first]
    assert (asked[-1].recycle, asked[-1].memory_mib) == ("max_memory", 99.0)
    loop.wait_until(lambda: first not in loop.workers)  # QUIT once the second is ready
    seen = loop.supervisor.seen
    gone = next(i for i, e in enumerate(seen) if isinstance(e, ChildExited) and e.pid == first)
    assert [e for e in seen[:gone] if isinstance(e, Observed) and e.pid != first
            and e.state is WorkerState.IDLE], "a successor was ready before the first left"
    loop.feed(StopAll())  # each successor asks at once too: stop the chain
    loop.wait_until(lambda: False)
    assert loop.exit_code == 0
    loop.close()


def test_without_max_memory_the_master_never_wakes_to_sample() -> None:
    loop = make_loop(ready_then_wait_for_quit)
    loop.feed(StartWorker())
    loop.wait_until(lambda: any(isinstance(e, Observed) for e in loop.supervisor.seen))
    assert loop.memory.next_at is None
    assert loop._poll_timeout_ms(time.monotonic()) is None, "an idle master sleeps"
    loop.feed(StopAll())
    loop.wait_until(lambda: False)
    loop.close()
