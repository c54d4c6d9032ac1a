"""The snapshot the core shows the outside world: every field, as the core knows it."""

from __future__ import annotations

from prefork.core import (
    Boot,
    ChildExited,
    Forked,
    Observed,
    PoolConfig,
    Signal,
    Supervisor,
    WorkerState,
)
from prefork.core.events import MemorySampled
from prefork.core.signals import Sig
from prefork.core.snapshot import PoolView, Snapshot, WorkerView
from prefork.core.tally import GroupCounts


def _running_pool() -> Supervisor:
    """Two groups: mail has two workers (one performing), sms one (unforked)."""
    supervisor = Supervisor(PoolConfig.of(groups={"mail": 2, "sms": 1}))
    supervisor.handle(Boot(at=0.0))
    supervisor.handle(Forked("mail", 0, 101, at=0.0))
    supervisor.handle(Forked("mail", 1, 102, at=0.0))
    supervisor.handle(Forked("sms", 0, 103, at=0.0))
    supervisor.handle(Observed(101, WorkerState.PERFORMING, heartbeat_at=1.0, performs=7,
                               at=1.0))
    return supervisor


def test_a_snapshot_names_the_state_the_targets_and_every_worker() -> None:
    snapshot = _running_pool().snapshot()
    assert snapshot == Snapshot(
        state="running",
        targets=(("mail", 2), ("sms", 1)),
        workers=(
            WorkerView("mail", 0, 101, "performing", 7, 0, False, forked_at=0.0,
                       heartbeat_at=1.0),
            WorkerView("mail", 1, 102, "spawning", 0, 0, False, forked_at=0.0),
            WorkerView("sms", 0, 103, "spawning", 0, 0, False, forked_at=0.0),
        ),
        exit_code=0,
        at=1.0,
        counts=(GroupCounts("mail"), GroupCounts("sms")),
        crash_loops=(),
        pools=(PoolView("mail", 2, 0, None, False, 1, 0, 1, None),
               PoolView("sms", 1, 0, None, False, 0, 0, 1, None)),
    )
    assert isinstance(snapshot.state, str) and isinstance(snapshot.workers[0].state, str)


def test_a_snapshot_shows_who_was_told_to_stop_and_the_new_generation() -> None:
    supervisor = _running_pool()
    supervisor.handle(Signal(Sig.HUP, at=2.0))  # every worker replaced, gracefully
    snapshot = supervisor.snapshot()
    assert snapshot.state == "reloading"
    assert snapshot.pids(stopping=True) == [101, 102, 103]
    assert snapshot.pids(stopping=False) == []  # the new generation is not forked yet
    assert snapshot.pids() == [101, 102, 103]
    new = [view for view in snapshot.workers if view.generation == 1]
    assert [(view.group, view.slot, view.pid) for view in new] == [
        ("mail", 0, None), ("mail", 1, None), ("sms", 0, None)]


def test_a_snapshot_does_not_move_with_the_pool() -> None:
    supervisor = _running_pool()
    before = supervisor.snapshot()
    supervisor.handle(Signal(Sig.TTIN, at=2.0))
    assert before.targets == (("mail", 2), ("sms", 1))
    assert supervisor.snapshot().targets == (("mail", 3), ("sms", 1))


def test_a_pool_view_shows_its_bounds_its_readings_and_its_crash_loop() -> None:
    supervisor = Supervisor(PoolConfig.of(groups={
        "mail": {"workers": 2, "max_workers": 6, "min_spare": 1, "max_spare": 2},
        "sms": {"workers": 1, "restart_backoff": 4, "restart_backoff_max": 8,
                "restart_period": 10}}))
    supervisor.handle(Boot(at=0.0))
    for pid, (group, slot) in enumerate([("mail", 0), ("mail", 1), ("sms", 0)], 101):
        supervisor.handle(Forked(group, slot, pid, at=0.0))
    supervisor.handle(Observed(101, WorkerState.IDLE, at=1.0))
    supervisor.handle(Observed(102, WorkerState.IDLE, at=1.0))
    supervisor.handle(Observed(103, WorkerState.IDLE, at=1.0))
    supervisor.handle(ChildExited(103, 1, at=2.0))  # the first crash: replaced at once
    supervisor.handle(Forked("sms", 0, 104, at=2.0))
    supervisor.handle(ChildExited(104, 1, at=3.0))  # the second: backed off 4s
    mail, sms = supervisor.snapshot().pools
    assert mail == PoolView("mail", 2, 0, 6, True, 0, 2, 0, None)
    assert sms == PoolView("sms", 1, 0, None, False, 0, 0, 0,
                           "pool sms: 2 crashes in 10s, next start in 4s")


def test_a_snapshot_counts_recycled_workers_by_reason() -> None:
    supervisor = _running_pool()
    supervisor.handle(Observed(101, WorkerState.IDLE, performs=8, recycle="max_memory",
                               memory_mib=300, at=2.0))
    supervisor.handle(Forked("mail", 0, 104, at=2.0))
    supervisor.handle(Observed(104, WorkerState.IDLE, at=3.0))  # ready: 101 is told to QUIT
    snapshot = supervisor.snapshot()
    assert [(v.pid, v.state, v.stopping) for v in snapshot.workers if v.slot == 0
            and v.group == "mail"] == [(101, "stopping", True), (104, "idle", False)]
    supervisor.handle(ChildExited(101, 0, 9, at=4.0))
    supervisor.handle(ChildExited(102, 1, at=4.0))
    (mail, _sms) = supervisor.snapshot().counts
    assert mail.recycles == (("max_memory", 1),)
    assert mail.exits == (("retired", 1), ("setup failed", 1))


def test_a_worker_view_carries_the_master_s_latest_memory_sample() -> None:
    supervisor = Supervisor(PoolConfig.of(groups={"mail": {"workers": 1, "max_memory": 500}}))
    supervisor.handle(Boot(at=0.0))
    supervisor.handle(Forked("mail", 0, 101, at=0.0))
    supervisor.handle(Observed(101, WorkerState.IDLE, at=1.0))
    assert supervisor.snapshot().workers[0].uss_mib is None, "not sampled yet"
    supervisor.handle(MemorySampled(101, 42.5, at=2.0))
    supervisor.handle(MemorySampled(101, 43.0, at=4.0))
    snapshot = supervisor.snapshot()
    assert snapshot.workers[0].uss_mib == 43.0, "the latest sample"
    assert snapshot.at == 4.0
