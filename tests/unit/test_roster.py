"""The roster: the door keeps every index in step, and ``recount`` sees every drift.

The supervisor's tests (and the spec runner, and the property machine) call
``recount()`` after every event; these tests make sure it would notice each kind of
drift, and pin what a recount alone cannot tell.
"""

from __future__ import annotations

import pytest
from core_driver import Driver, bare_roster, working

from prefork.core import (
    Boot,
    ChildExited,
    CoreError,
    Log,
    Observed,
    PoolConfig,
    RunHook,
    Spawn,
    WorkerState,
)
from prefork.core.context import MachineContext
from prefork.core.roster import Roster

PERFORMING = WorkerState.PERFORMING


def booted(**options) -> Driver:
    options.setdefault("setup_timeout", None)
    driver = Driver(PoolConfig.of(**options))
    driver.send(Boot(at=0.0))
    return driver


def test_enlisting_runs_before_fork_then_asks_for_the_fork() -> None:
    context = MachineContext()
    config = PoolConfig.of(groups={"a": 1})
    roster = Roster(config, context, lambda group, slot: 0.0)
    worker = roster.enlist(config.group("a"), 0)
    assert context.take() == [RunHook("before_fork", ("a", 0)), Spawn("a", 0)]
    assert roster.unanswered("a", 0) is worker and roster.first_unanswered() == ("a", 0)
    assert roster.recount() == []


def test_the_live_workers_of_each_group_are_counted_at_the_door(monkeypatch) -> None:
    """The status line (told after every event) counts each group's live workers: from a
    count the door keeps, never by walking the pool."""
    from prefork.core.master_states import MasterState
    from prefork.core.status import status_line

    context = MachineContext()
    config = PoolConfig.of(groups={"a": 2, "b": 1}, setup_timeout=None)
    roster = Roster(config, context, lambda group, slot: 0.0)
    a0, a1, b0 = (roster.enlist(config.group(g), slot) for g, slot in (("a", 0), ("a", 1),
                                                                        ("b", 0)))
    for pid, worker in enumerate((a0, a1, b0), start=40):
        roster.change(worker, "forked", pid)
    roster.change(a1, "exited", 1, None)
    assert (roster.active_count("a"), roster.active_count("b"), roster.active_count()) == (
        1, 1, 2)
    assert roster.recount() == []
    monkeypatch.setattr(Roster, "active", lambda *args: pytest.fail("walked the pool"))
    assert status_line(MasterState.RUNNING, roster) == "running: 2/3 workers (a 1/2, b 1/1)"


def test_the_machine_adds_and_drops_a_model_without_comparing_the_others(monkeypatch) -> None:
    """After each fork every page of the master is shared with the new worker, and each
    object the master touches is a page copied. A list's ``in`` and ``remove`` compare
    the model with every other (a reference count written on each): with 1024 workers,
    a thousand pages copied per respawn. The machine keeps its models by identity."""
    from prefork.core.worker_machine import Worker

    context = MachineContext()
    config = PoolConfig.of(groups={"a": 3}, setup_timeout=None)
    roster = Roster(config, context, lambda group, slot: 0.0)
    workers = [roster.enlist(config.group("a"), slot) for slot in range(3)]
    for pid, worker in enumerate(workers, start=40):
        roster.change(worker, "forked", pid)
    monkeypatch.setattr(Worker, "__eq__", lambda self, other: pytest.fail("compared"))
    roster.change(workers[2], "exited", 1, None)
    roster.enlist(config.group("a"), 2)
    assert roster.recount() == []


def test_the_door_indexes_the_pid_and_forgets_the_dead() -> None:
    context = MachineContext()
    config = PoolConfig.of(groups={"a": 1}, setup_timeout=None)
    roster = Roster(config, context, lambda group, slot: 0.0)
    worker = roster.enlist(config.group("a"), 0)
    roster.change(worker, "forked", 42)
    assert roster.by_pid(42) is worker and roster.first_unanswered() is None
    assert roster.recount() == []
    roster.change(worker, "exited", 1, None)
    assert roster.by_pid(42) is None and roster.workers == [] and len(roster) == 0
    assert list(roster._machine.models) == []
    assert roster.vacancies.due(0.0) == [("a", 0)]
    assert roster.recount() == []


def test_a_missing_row_leaves_the_worker_and_every_index_alone() -> None:
    context = MachineContext()
    config = PoolConfig.of(groups={"a": 1}, setup_timeout=None)
    roster = Roster(config, context, lambda group, slot: 0.0)
    worker = roster.enlist(config.group("a"), 0)
    roster.change(worker, "forked", 42)
    roster.change(worker, "reported_idle", 0.0, 0)
    context.take()
    with pytest.raises(CoreError, match="no row for reported_spawning in state idle"):
        roster.change(worker, "reported_spawning", 0.0, 0)
    with pytest.raises(CoreError, match="worker machine: no row for booted in state idle"):
        roster.change(worker, "booted")
    assert worker.state is WorkerState.IDLE
    assert roster.recount() == [] and context.take() == []


def test_the_bookkeeping_check_finds_each_kind_of_drift() -> None:
    # the tests trust recount() after every event: it must see every drift
    def drifted(spoil) -> list[str]:
        driver = booted(groups={"a": 2}, setup_timeout=5)
        spoil(driver.core.roster)
        return driver.core.recount()

    assert drifted(lambda roster: None) == []
    assert drifted(lambda roster: roster._active.popitem()) == [
        "live slots [('a', 0)] != [('a', 0), ('a', 1)]"]
    assert drifted(lambda roster: roster.vacancies._when.update({("a", 7): 0.0})) == [
        "vacant slots [('a', 7)] != []"]
    assert drifted(lambda roster: roster._unforked.update({("a", 0): roster.workers[0]})) == [
        "unforked [('a', 0)] != []"]
    assert drifted(lambda roster: roster._by_pid.popitem()) == [
        "the pid index is not the forked workers"]
    assert drifted(lambda roster: setattr(roster, "old_workers", 1)) == [
        "1 old workers counted, 0 found"]
    assert drifted(lambda roster: roster.deadlines._heap.clear()) == [
        "the deadline heap lost the earliest worker deadline"]
    assert drifted(lambda roster: roster._machine.remove_model(roster.workers[0])) == [
        "the machine's models are not the roster's workers"]
    assert drifted(lambda roster: setattr(roster.workers[1], "slot", 0)) == [
        "two live workers share a slot",
        "live slots [('a', 0), ('a', 1)] != [('a', 0)]",
        "live workers per group {'a': 2} != {'a': 1}",
        "vacant slots [] != [('a', 1)]"]
    assert drifted(lambda roster: roster._live_in.update({"a": 3})) == [
        "live workers per group {'a': 3} != {'a': 2}"]
    assert drifted(lambda roster: roster._retiring.update({roster.workers[0]: None})) == [
        "the retiring index is not the retiring workers"]
    assert drifted(lambda roster: roster._working.update({("a", 0): {roster.workers[0]: None}})
                   ) == ["the working index is not the set-up workers not told to stop"]
    assert drifted(lambda roster: roster._sampled.update({("a", WorkerState.IDLE): 1})) == [
        "idle and busy workers counted {('a', <WorkerState.IDLE: 'idle'>): 1}, found "
        "Counter()"]
    assert drifted(lambda roster: roster._maybe_surplus.update({object(): None})) == [
        "a buried worker is still up for retirement"]

    driver = booted(workers=1, restart_backoff=2)  # a slot vacant until its back-off ends
    for at in (1.0, 1.5):
        (pid,) = driver.pids()
        driver.send(ChildExited(pid, 1, at=at))
    assert driver.core.recount() == []
    driver.core.roster.vacancies._when[("default", 0)] = 9.0
    assert driver.core.recount() == [
        "slot ('default', 0) refills at 9.0, its history says otherwise"]


def test_the_deadline_heap_stays_small_when_deadlines_move_back() -> None:
    # stale entries leave the heap when they reach its top; deadlines that keep moving
    # earlier leave them below it, so the heap is rebuilt once it is mostly stale
    driver = booted(workers=1, setup_timeout=None, timeout=1000)
    (pid,) = driver.pids()
    for step in range(500):
        driver.send(Observed(pid, PERFORMING, heartbeat_at=500.0 - step, performs=step,
                             at=1.0))
    assert len(driver.core.roster.deadlines._heap) <= 4 * 1 + 64 + 1
    assert driver.core.next_deadline() == 1001.0


def test_a_retiring_worker_is_looked_at_only_when_something_could_replace_it() -> None:
    """A pool that recycles long performs may hold hundreds of retiring workers: each
    event looks only at those a "replaced" check is due for (they began to retire, a newer
    worker of their slot works, or a target changed), never at all of them."""
    driver = booted(groups={"a": 3})
    for pid in driver.pids():
        driver.send(Observed(pid, PERFORMING, heartbeat_at=0.5, at=0.5))
    old = driver.pids()
    for pid in old:  # each asks to be recycled: its replacement is forked at once
        driver.send(Observed(pid, PERFORMING, heartbeat_at=0.5, recycle="max_performs",
                             at=1.0))
    roster = driver.core.roster
    assert [w.pid for w in roster._retiring] == old
    assert roster._maybe_replaced == {}  # each was looked at; none is replaced yet
    newcomer = driver.pids("spawning")[1]
    driver.send(Observed(newcomer, WorkerState.IDLE, at=1.5))  # slot a.1's successor works
    assert [w.pid for w in driver.core.workers if w.state is WorkerState.STOPPING] == [old[1]]
    assert roster._maybe_replaced == {}
    assert [w.pid for w in roster._retiring] == [old[0], old[2]]
    roster.set_target("a", 1)  # slot a.2 is gone: its retiring worker is due a look
    assert roster.next_replaced().pid == old[2]


def test_the_bookkeeping_check_sees_a_replaced_worker_nobody_will_look_at() -> None:
    driver = booted(groups={"a": 2})
    for pid in driver.pids():
        driver.send(Observed(pid, PERFORMING, heartbeat_at=0.5, at=0.5))
    first = driver.pids()[0]
    driver.send(Observed(first, PERFORMING, heartbeat_at=0.5, recycle="max_performs",
                         at=1.0))
    roster = driver.core.roster
    assert driver.core.recount() == []
    roster.targets["a"] = 0  # behind the door's back: slot a.0 is gone, unseen
    assert (f"retiring group=a slot=0 pid={first} is replaced, but no check is due for it"
            in driver.core.recount())
    roster.targets["a"] = 2
    roster._maybe_replaced[roster.workers[1]] = None  # not retiring
    assert driver.core.recount() == ["a worker that is not retiring is up for a replaced "
                                     "check"]


def test_replaced_workers_are_stopped_in_the_order_they_began_to_retire() -> None:
    """The roster alone, no rules between the steps: two workers retire, a and then b;
    b's successor works first, a's next; a is still the first to go."""
    roster, config, _ = bare_roster(a=2)
    a, b = working(roster, config, "a", 0, 40), working(roster, config, "a", 1, 41)
    roster.change(a, "recycle_requested", "max_performs", None)
    roster.change(b, "recycle_requested", "max_performs", None)
    assert roster.next_replaced() is None  # no successor works yet
    working(roster, config, "a", 1, 43)
    working(roster, config, "a", 0, 42)
    assert roster.next_replaced() is a
    roster.change(a, "stop_requested")
    assert roster.next_replaced() is b
    assert roster.recount() == []


def test_a_retiring_worker_of_a_dropped_pool_is_replaced() -> None:
    roster, config, _ = bare_roster(a=1, b=1)
    worker = working(roster, config, "b", 0, 40)
    roster.change(worker, "recycle_requested", "max_performs", None)
    assert roster.next_replaced() is None
    roster.set_targets({"a": 1})  # a reload dropped pool b: no successor will come
    assert roster.next_replaced() is worker


def test_the_bookkeeping_check_sees_a_retiring_worker_left_out_of_its_checks() -> None:
    roster, config, _ = bare_roster(a=1)
    old = working(roster, config, "a", 0, 40)
    roster.change(old, "recycle_requested", "max_performs", None)
    assert roster.next_replaced() is None
    working(roster, config, "a", 0, 41)  # its successor works: a check is due
    assert roster.recount() == []
    roster._maybe_replaced.clear()  # behind the door's back
    assert roster.recount() == [
        "retiring group=a slot=0 pid=40 is replaced, but no check is due for it"]
    roster._maybe_replaced[old] = None
    roster.targets.clear()  # its pool dropped, unseen: replaced, and due
    assert "retiring group=a slot=0 pid=40 is replaced, but no check is due for it" not in (
        roster.recount())
    roster._maybe_replaced.clear()
    assert "retiring group=a slot=0 pid=40 is replaced, but no check is due for it" in (
        roster.recount())


def test_the_bookkeeping_check_sees_the_retiring_order_lost() -> None:
    roster, config, _ = bare_roster(a=2)
    for slot, pid in ((0, 40), (1, 41)):
        worker = working(roster, config, "a", slot, pid)
        roster.change(worker, "recycle_requested", "max_performs", None)
    first, second = roster._retiring
    roster._retiring[first], roster._retiring[second] = 2, 1
    assert roster.recount() == [
        "the retiring index lost the order the workers began to retire in"]


def test_a_surplus_worker_that_dies_before_its_turn_leaves_the_candidates() -> None:
    roster, config, _ = bare_roster(a=2)
    working(roster, config, "a", 0, 40)
    extra = working(roster, config, "a", 1, 41)
    roster.set_target("a", 1)  # a.1 is surplus: a candidate to retire
    roster.change(extra, "exited", 1, None)  # it died before the rules got to it
    assert roster.recount() == []
    assert roster.next_surplus(paused=False) is None


def test_a_fork_is_logged_as_spawned_at_info_once() -> None:
    roster, config, context = bare_roster(a=1)
    worker = roster.enlist(config.group("a"), 0)
    context.take()
    roster.change(worker, "forked", 40)
    [line] = [e for e in context.take() if isinstance(e, Log)]
    assert (line.level, line.message) == ("info", "worker group=a slot=0 pid=40 spawned")
    assert dict(line.fields)["event"] == "spawned"
    roster.change(worker, "reported_spawning", 0.0, 0)
    assert context.take() == []


def test_every_replaced_worker_of_one_event_is_stopped_in_that_event() -> None:
    """A smaller target leaves two retiring workers without a slot: both are told to
    stop at once, not one per event."""
    from prefork.core.events import Scale

    driver = booted(groups={"a": 3})
    for pid in driver.pids():
        driver.send(Observed(pid, PERFORMING, heartbeat_at=0.5, at=0.5))
    retiring = driver.pids()[1:]
    for pid in retiring:  # slots a.1 and a.2 recycle; their successors set up
        driver.send(Observed(pid, PERFORMING, heartbeat_at=0.5, recycle="max_performs",
                             at=1.0))
    driver.send(Scale("a", 1))
    stopping = [w.pid for w in driver.core.workers if w.state is WorkerState.STOPPING]
    assert set(retiring) <= set(stopping)


def test_a_pool_of_no_workers_counts_none() -> None:
    roster, config, _ = bare_roster(a=1, b=0)
    working(roster, config, "a", 0, 40)
    assert (roster.active_count("a"), roster.active_count("b"), roster.active_count()) == (
        1, 0, 1)


def test_a_worker_not_forked_yet_has_no_fork_time_and_no_made_up_attributes() -> None:
    roster, config, _ = bare_roster(a=1)
    worker = roster.enlist(config.group("a"), 0)
    assert worker.forked_at is None
    with pytest.raises(AttributeError, match="'Worker' object has no attribute 'nosuch'"):
        worker.nosuch  # noqa: B018
