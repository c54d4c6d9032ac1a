"""The core's counters (restarts, exits by outcome, kills, recycles, performs) and the
readiness a probe reads, driven through the supervisor as the adapter would."""

from __future__ import annotations

from prefork.core import (
    Boot,
    ChildExited,
    Forked,
    Observed,
    PoolConfig,
    Signal,
    Spawn,
    Supervisor,
    Tick,
    WorkerState,
)
from prefork.core.events import ForkFailed
from prefork.core.readiness import not_ready_because
from prefork.core.signals import Sig
from prefork.core.tally import GroupCounts


def _pool(**options: object) -> Supervisor:
    supervisor = Supervisor(PoolConfig.of(groups={"mail": 2, "sms": 1}, **options))
    supervisor.handle(Boot(at=0.0))
    supervisor.handle(Forked("mail", 0, 101, at=0.0))
    supervisor.handle(Forked("mail", 1, 102, at=0.0))
    supervisor.handle(Forked("sms", 0, 103, at=0.0))
    for pid in (101, 102, 103):
        supervisor.handle(Observed(pid, WorkerState.IDLE, performs=0, at=0.5))
    return supervisor


def _counts(supervisor: Supervisor, group: str) -> GroupCounts:
    return next(c for c in supervisor.snapshot().counts if c.group == group)


def test_a_fresh_pool_counts_nothing_and_is_ready() -> None:
    supervisor = _pool()
    assert _counts(supervisor, "mail") == GroupCounts("mail")
    assert not_ready_because(supervisor.snapshot()) == []


def test_a_crash_counts_an_exit_its_performs_and_the_restart_of_its_slot() -> None:
    supervisor = _pool()
    supervisor.handle(Observed(101, WorkerState.IDLE, performs=5, at=1.0))
    supervisor.handle(ChildExited(101, 3, performs=6, at=2.0))
    supervisor.handle(Forked("mail", 0, 104, at=2.0))
    counts = _counts(supervisor, "mail")
    assert counts.exits == (("crashed", 1),)
    assert counts.exit_count("crashed", "killed") == 1
    assert counts.performs_of_ended == 6
    assert counts.restarts == 1
    assert _counts(supervisor, "sms") == GroupCounts("sms")


def test_a_timeout_counts_a_kill_for_timeout_and_a_timed_out_exit() -> None:
    supervisor = _pool(timeout=10.0)
    supervisor.handle(Observed(102, WorkerState.PERFORMING, heartbeat_at=1.0, at=1.0))
    supervisor.handle(Tick(11.0))  # ABRT, and its replacement at once
    supervisor.handle(Forked("mail", 1, 105, at=11.0))
    supervisor.handle(ChildExited(102, -6, performs=0, at=11.5))
    counts = _counts(supervisor, "mail")
    assert counts.exits == (("timed out", 1),)
    assert counts.kills == (("timeout", 1),)


def test_a_worker_at_max_performs_is_a_recycle() -> None:
    supervisor = _pool(max_performs=3)
    supervisor.handle(ChildExited(103, 0, performs=3, at=1.0))
    counts = _counts(supervisor, "sms")
    assert counts.recycles == (("max_performs", 1),)
    assert counts.exits == (("retired", 1),)


def test_failed_performs_are_counted_from_the_rise_of_the_workers_count() -> None:
    supervisor = _pool()
    supervisor.handle(Observed(101, WorkerState.IDLE, performs=2, failures=2, at=1.0))
    supervisor.handle(Observed(101, WorkerState.IDLE, performs=3, failures=3, at=2.0))
    assert _counts(supervisor, "mail").perform_failures == 3


def test_a_fork_failure_is_an_exit_of_its_own_class() -> None:
    supervisor = Supervisor(PoolConfig.of(workers=1))
    supervisor.handle(Boot(at=0.0))
    supervisor.handle(ForkFailed("default", 0, "EAGAIN", at=0.0))
    assert supervisor.snapshot().counts[0].exits == (("fork failed", 1),)
    supervisor.handle(ForkFailed("default", 0, "EAGAIN", at=0.0))  # the one retried at once
    assert supervisor.snapshot().counts[0].exits == (("fork failed", 2),)


def test_a_pool_short_of_one_worker_says_how_many_are_ready() -> None:
    supervisor = _pool()
    supervisor.handle(ChildExited(102, 1, at=1.0))  # replaced at once: the new one sets up
    supervisor.handle(Forked("mail", 1, 104, at=1.0))
    assert not_ready_because(supervisor.snapshot()) == ["pool mail has 1/2 workers ready"]
    # one failure alone is replaced at once: no crash loop
    assert supervisor.snapshot().crash_loops == ()


def test_not_ready_while_booting_short_of_workers_in_a_crash_loop_or_stopping() -> None:
    supervisor = Supervisor(PoolConfig.of(workers=1, restart_backoff=1.0))
    supervisor.handle(Boot(at=0.0))
    supervisor.handle(Forked("default", 0, 101, at=0.0))
    assert not_ready_because(supervisor.snapshot()) == ["pool default has 0/1 workers ready"]
    supervisor.handle(ChildExited(101, 1, at=0.1))  # setup failed: replaced at once
    supervisor.handle(Forked("default", 0, 102, at=0.1))
    supervisor.handle(ChildExited(102, 1, at=0.2))  # again: backed off, a crash loop
    reasons = not_ready_because(supervisor.snapshot())
    assert "pool default slot 0 is in a crash loop (2 failures in a row)" in reasons
    supervisor.handle(Tick(1.5))
    supervisor.handle(Forked("default", 0, 103, at=1.5))
    supervisor.handle(Observed(103, WorkerState.IDLE, performs=1, at=1.6))
    assert not_ready_because(supervisor.snapshot()) == []
    supervisor.handle(Signal(Sig.QUIT, at=2.0))
    assert not_ready_because(supervisor.snapshot())[0] == "the master is draining"


def test_every_counter_adds_up_over_several_workers() -> None:
    """Counts add: two kills, two crashes, two recycles are twos, performs a sum."""
    supervisor = _pool(timeout=10.0, max_performs=3)
    for pid in (101, 102):  # both hang in a perform: ABRT for both, each replaced at once
        supervisor.handle(Observed(pid, WorkerState.PERFORMING, heartbeat_at=1.0, at=1.0))
    spawns = [e for e in supervisor.handle(Tick(11.5)) if isinstance(e, Spawn)]
    assert [(spawn.group, spawn.slot) for spawn in spawns] == [("mail", 0), ("mail", 1)]
    supervisor.handle(Forked("mail", 0, 104, at=11.5))
    supervisor.handle(Forked("mail", 1, 105, at=11.5))
    supervisor.handle(ChildExited(101, -6, performs=2, at=11.6))
    supervisor.handle(ChildExited(102, -6, performs=1, at=11.7))
    counts = _counts(supervisor, "mail")
    assert counts.kills == (("timeout", 2),)
    assert counts.exits == (("timed out", 2),)
    assert counts.performs_of_ended == 3
    assert counts.restarts == 2
    for slot, pid in enumerate((104, 105)):  # each crashes after a perform: replaced
        supervisor.handle(Observed(pid, WorkerState.IDLE, performs=1, at=12.0))
        supervisor.handle(ChildExited(pid, 3, performs=2, at=12.5))
        supervisor.handle(Forked("mail", slot, pid + 10, at=12.5))
    assert dict(_counts(supervisor, "mail").exits)["crashed"] == 2
    supervisor.handle(ChildExited(103, 0, performs=3, at=13.0))  # two recycles in sms
    supervisor.handle(Forked("sms", 0, 106, at=13.0))
    supervisor.handle(Observed(106, WorkerState.IDLE, performs=3, at=13.5))
    supervisor.handle(ChildExited(106, 0, performs=3, at=14.0))
    counts = _counts(supervisor, "sms")
    assert counts.recycles == (("max_performs", 2),)
    assert counts.exits == (("retired", 2),)
    assert counts.performs_of_ended == 6
