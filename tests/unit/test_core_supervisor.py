"""The supervisor, scripted one event at a time; the whole state is checked after each.

specs/ covers every row and the signal scenarios; these tests pin the edges: the adapter
contract, the clock, wake-ups, back-off arithmetic and the exact log lines.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from core_driver import Driver

from prefork.core import (
    Boot,
    ChildExited,
    ConfigRejected,
    CoreError,
    Exit,
    Forked,
    ForkFailed,
    Kill,
    Log,
    MasterState,
    Observed,
    PoolConfig,
    ReadConfig,
    Reload,
    Reply,
    RunHook,
    Scale,
    SetTitle,
    Sig,
    Signal,
    Spawn,
    StartWorker,
    Status,
    StopWorker,
    Supervisor,
    Tick,
    WakeAt,
    WorkerState,
)
from prefork.core.outcomes import Outcome

IDLE, PERFORMING = WorkerState.IDLE, WorkerState.PERFORMING


def booted(**options) -> Driver:
    options.setdefault("setup_timeout", None)
    driver = Driver(PoolConfig.of(**options))
    driver.send(Boot(at=0.0))
    return driver


def test_boot_spawns_every_slot_and_asks_for_no_wake_up_without_timers() -> None:
    driver = Driver(PoolConfig.of(groups={"a": 2, "b": 1}, setup_timeout=None))
    effects = driver.send(Boot(at=0.0))
    assert [e for e in effects if isinstance(e, Spawn)] == [
        Spawn("a", 0), Spawn("a", 1), Spawn("b", 0)]
    assert not driver.of(WakeAt)
    assert effects[:2] == [Log("info", "master booting -> running (booted)"),
                           SetTitle("prefork master [prefork]: 3 workers in 2 pools "
                                    "(running)")]
    assert driver.core.state is MasterState.RUNNING


def test_setup_timeout_asks_for_a_wake_up_and_cancels_it_when_setup_finishes() -> None:
    driver = booted(workers=1, setup_timeout=5)
    assert driver.of(WakeAt)[-1] == WakeAt(5.0)
    (pid,) = driver.pids()
    effects = driver.send(Observed(pid, IDLE, at=1.0))
    assert effects[-1] == WakeAt(None)
    assert driver.send(Tick(2.0)) == []


def test_an_event_before_the_spawn_is_answered_breaks_the_contract() -> None:
    core = Supervisor(PoolConfig.of(workers=1))
    core.handle(Boot(at=0))
    with pytest.raises(CoreError, match=r"before Spawn\('default', 0\) was answered"):
        core.handle(Signal(Sig.QUIT))


def test_answers_to_no_spawn_and_reused_live_pids_are_refused() -> None:
    driver = booted(workers=1)
    with pytest.raises(CoreError, match="answers no Spawn"):
        driver.core.handle(Forked("default", 5, 999))
    with pytest.raises(CoreError, match="answers no Spawn"):
        driver.core.handle(ForkFailed("nope", 0, "EAGAIN"))
    driver.send(StartWorker())
    core = driver.core
    core.handle(StartWorker())
    with pytest.raises(CoreError, match="reuses the pid of a live worker"):
        core.handle(Forked("default", 2, 100))


def test_readings_of_unknown_pids_and_unknown_signals_raise() -> None:
    driver = booted(workers=1)
    with pytest.raises(CoreError, match="names no live worker"):
        driver.send(Observed(4242, IDLE))
    with pytest.raises(CoreError, match="no row for Signal"):
        driver.send(Signal(Sig.KILL))


def test_a_missing_row_raises_and_leaves_the_state_alone() -> None:
    driver = booted(workers=1)
    (pid,) = driver.pids()
    worker = driver.core.worker_by_pid(pid)
    driver.send(Observed(pid, IDLE))
    with pytest.raises(CoreError) as caught:
        driver.core.fire(worker, "deadline_passed")
    assert str(caught.value) == (
        f"worker machine: no row for deadline_passed in state idle (group=default slot=0 pid={pid})"
    )
    with pytest.raises(CoreError, match="no row for reported_spawning in state idle"):
        driver.send(Observed(pid, WorkerState.SPAWNING))
    assert worker.state is IDLE
    with pytest.raises(CoreError, match="master machine: no row for booted in state running"):
        driver.core.fire(driver.core, "booted")
    assert driver.core.state is MasterState.RUNNING


def test_the_clock_only_moves_forward() -> None:
    driver = booted(workers=1)
    driver.send(Tick(10.0))
    driver.send(Signal(Sig.USR1, at=4.0))
    assert driver.core.now == 10.0
    driver.send(Signal(Sig.USR1))
    assert driver.core.now == 10.0


def test_a_crash_is_replaced_at_once_then_backed_off_exponentially() -> None:
    driver = booted(workers=1, restart_backoff=1, restart_backoff_max=4)
    spawn_times = []
    for at in [1.0, 2.0, 4.0, 8.0, 13.0, 18.0]:
        driver.send(Tick(at))
        spawns = driver.of(Spawn)
        if spawns:
            spawn_times.append(at)
        (pid,) = driver.pids() or [None]
        if pid is not None:
            driver.send(ChildExited(pid, 1, at=at))
            if driver.of(Spawn):
                spawn_times.append(at)
    # crash 1 at t=1 -> at once; crash 2 at t=1 -> +1s; crash 3 at t=2 -> +2s ...
    assert spawn_times[0] == 1.0
    history = driver.core.restarts.history("default", 0)
    assert history.failures >= 3
    assert history.respawn_at - driver.core.now <= 4


def test_backoff_wakes_the_master_when_the_slot_may_be_refilled() -> None:
    driver = booted(workers=1, restart_backoff=2, restart_backoff_max=30)
    (first,) = driver.pids()
    driver.send(ChildExited(first, 1, at=1.0))
    (second,) = driver.pids()
    effects = driver.send(ChildExited(second, 1, at=1.5))
    assert Log("warning", "pool default: 2 crashes in 60s, next start in 2s "
                          "(slot default.0 failed 2 times in a row)") in effects
    assert effects[-1] == WakeAt(3.5)
    assert driver.pids() == []
    assert not [e for e in driver.send(Tick(3.4)) if isinstance(e, Spawn)]
    assert Spawn("default", 0) in driver.send(Tick(3.5))


def test_a_worker_that_performed_resets_the_backoff() -> None:
    driver = booted(workers=1, restart_backoff=2)
    for _ in range(3):
        (pid,) = driver.pids() or [None]
        driver.send(ChildExited(pid, 1))
        driver.send(Tick(driver.core.now + 100))
    (pid,) = driver.pids()
    driver.send(Observed(pid, IDLE, performs=3))
    effects = driver.send(ChildExited(pid, 1))
    assert Spawn("default", 0) in effects
    assert driver.core.restarts.history("default", 0).failures == 1


def test_a_long_lived_worker_resets_the_backoff() -> None:
    driver = booted(workers=1, restart_backoff=2, restart_backoff_max=10)
    (pid,) = driver.pids()
    driver.send(ChildExited(pid, 1, at=1))
    (pid,) = driver.pids()
    driver.send(ChildExited(pid, 1, at=1))
    driver.send(Tick(3))
    (pid,) = driver.pids()
    driver.send(Observed(pid, IDLE, at=4))  # ready at 4: its time up counts from then
    effects = driver.send(ChildExited(pid, 1, at=4 + 10))
    assert Spawn("default", 0) in effects


def test_time_up_counts_from_the_first_ready_reading_not_from_the_fork() -> None:
    driver = booted(workers=1, restart_backoff=2, restart_backoff_max=10)
    (pid,) = driver.pids()
    driver.send(ChildExited(pid, 1, at=1))
    (pid,) = driver.pids()  # forked at 1, ready at 9: up 10s since the fork, 2s ready
    driver.send(Observed(pid, IDLE, at=9))
    effects = driver.send(ChildExited(pid, 1, at=11))
    assert Log("warning", "pool default: 2 crashes in 60s, next start in 2s "
                          "(slot default.0 failed 2 times in a row)") in effects
    assert not driver.of(Spawn)


def test_a_worker_that_never_became_ready_never_ends_a_run_of_failures() -> None:
    # a setup that hangs for longer than restart_backoff_max, timed out again and again
    driver = booted(workers=1, setup_timeout=20, restart_backoff=1, restart_backoff_max=4)
    delays = []
    for _ in range(4):
        (worker,) = driver.core.active_workers()
        deadline = worker.deadline
        effects = driver.send(Tick(deadline))
        assert Kill(worker.pid, Sig.ABRT) in effects
        delays += [line.message.split("next start in ")[1].split(" ")[0]
                   for line in driver.of(Log) if "next start in" in line.message]
        driver.send(ChildExited(worker.pid, -9, at=deadline))
        driver.send(Tick(deadline + 4))  # the back-off is over: the slot is refilled
    assert delays == ["1s", "2s", "4s"]


def test_a_clean_exit_after_performs_is_a_retirement_not_a_crash() -> None:
    driver = booted(workers=1, max_restarts=0)
    (pid,) = driver.pids()
    driver.send(Observed(pid, IDLE, performs=5))
    effects = driver.send(ChildExited(pid, 0))
    assert Log("info", f"worker group=default slot=0 pid={pid} exited by itself after "
                       "5 performs") in effects
    assert Spawn("default", 0) in effects
    assert driver.core.state is MasterState.RUNNING
    assert driver.core.restarts.intensities["default"].times == []


def test_a_clean_exit_during_setup_is_a_crash() -> None:
    driver = booted(workers=1, max_restarts=0)
    (pid,) = driver.pids()
    effects = driver.send(ChildExited(pid, 0))
    assert Log("error", f"worker group=default slot=0 pid={pid} setup failed (exit status 0)"
               ) in effects
    assert Log("error", "pool default: more than 0 crashes in 60s: giving up") in effects
    assert driver.core.state is MasterState.STOPPED  # terminating, with no worker left
    assert Exit(1) in effects and not driver.of(Spawn)


def test_intensity_counts_only_crashes_inside_the_period() -> None:
    driver = booted(workers=1, max_restarts=2, restart_period=10, restart_backoff=0.5,
                    restart_backoff_max=1)
    for at in [0, 5, 11, 16]:
        (pid,) = driver.pids()
        driver.send(ChildExited(pid, 1, at=at))
        assert driver.core.state is MasterState.RUNNING, at
        driver.send(Observed(*driver.pids(), IDLE, at=at))  # ready: each ran long enough
    (pid,) = driver.pids()
    driver.send(ChildExited(pid, 1, at=17))
    assert driver.core.state is MasterState.STOPPED
    assert Exit(1) in driver.effects


def test_a_fork_failure_is_a_crash_that_backs_off() -> None:
    core = Supervisor(PoolConfig.of(workers=1, restart_backoff=1, setup_timeout=None))
    core.handle(Boot(at=0))
    effects = core.handle(ForkFailed("default", 0, "EAGAIN"))
    assert Log("error", "worker group=default slot=0 pid=None fork failed: EAGAIN") in effects
    assert Spawn("default", 0) in effects
    effects = core.handle(ForkFailed("default", 0, "EAGAIN"))
    assert WakeAt(1.0) in effects
    assert core.workers == []


def test_max_performs_is_the_worker_s_word_and_its_replacement_comes_first() -> None:
    """The core does not count a worker out (its limit has a jitter only it knows): a
    reading at max_performs changes nothing; the worker's ask forks the replacement, and
    the old one is told to stop only once the new one is ready."""
    driver = booted(workers=1, max_performs=10, max_performs_jitter=3)
    (pid,) = driver.pids()
    driver.send(Observed(pid, IDLE, performs=9))
    effects = driver.send(Observed(pid, PERFORMING, heartbeat_at=1, performs=10))
    assert not driver.of(Kill) and Spawn("default", 0) not in effects
    effects = driver.send(Observed(pid, PERFORMING, heartbeat_at=2, performs=12,
                                   recycle="max_performs"))
    assert Spawn("default", 0) in effects and not driver.of(Kill)
    (successor,) = driver.pids("spawning")
    assert [w.state.value for w in driver.core.workers] == ["retiring", "spawning"]
    effects = driver.send(Observed(successor, IDLE))
    assert Kill(pid, Sig.QUIT) in effects
    assert driver.core.snapshot().pids(stopping=True) == [pid]


def test_a_replacement_that_asks_at_once_still_replaces_the_worker_before_it() -> None:
    """Each new worker of a job over max_memory from the start asks as soon as it is
    ready: it still replaces the one before it (which is told to stop), so a slot never
    holds more than two set-up workers and the pool does not pile up retiring ones."""
    driver = booted(workers=1, max_memory=100)
    (first,) = driver.pids()
    driver.send(Observed(first, IDLE, recycle="max_memory", memory_mib=120))
    pids = [first]
    for _ in range(5):
        (newest,) = driver.pids("spawning")
        effects = driver.send(Observed(newest, IDLE, recycle="max_memory", memory_mib=130))
        assert Kill(pids[-1], Sig.QUIT) in effects and Spawn("default", 0) in effects
        pids.append(newest)
        states = sorted(w.state.value for w in driver.core.workers)
        assert states.count("retiring") == 1 and states.count("spawning") == 1
        driver.send(ChildExited(pids[-2], 0, 1))


def test_term_after_quit_sends_term_but_never_postpones_the_kill() -> None:
    driver = booted(workers=1, graceful_timeout=30, kill_timeout=60)
    (pid,) = driver.pids()
    driver.send(Signal(Sig.QUIT, at=0))
    effects = driver.send(Signal(Sig.TERM, at=5))
    assert Kill(pid, Sig.TERM) in effects
    assert driver.core.worker_by_pid(pid).deadline == 30
    assert driver.send(Signal(Sig.INT, at=6)) == []
    assert Kill(pid, Sig.KILL) in driver.send(Tick(30))
    assert driver.send(Tick(100)) == []


def test_term_after_quit_brings_the_kill_forward() -> None:
    driver = booted(workers=1, graceful_timeout=30, kill_timeout=2)
    (pid,) = driver.pids()
    driver.send(Signal(Sig.QUIT, at=0))
    driver.send(Signal(Sig.TERM, at=5))
    assert driver.core.worker_by_pid(pid).deadline == 7
    assert driver.effects[-1] == WakeAt(7)


def test_a_stray_child_is_logged_and_ignored() -> None:
    driver = booted(workers=1)
    effects = driver.send(ChildExited(31337, -9))
    assert effects == [Log("warning", "reaped pid=31337 (killed by signal 9), which is not "
                                      "a live worker: ignored")]


def test_scale_is_bounded_and_names_unknown_groups() -> None:
    driver = booted(groups={"a": 1}, max_workers=3)
    effects = driver.send(Scale("a", 7))
    assert Log("warning", "group a stays at 3 workers (asked for 7; bounds 0..3)") in effects
    assert driver.core.targets == {"a": 3}
    effects = driver.send(Scale("zz", 1))
    assert effects == [Log("warning", "no group 'zz' to scale (groups: a)")]
    driver.send(Scale("a", -4))
    assert driver.core.targets == {"a": 0}
    driver.send(StopWorker("a"))
    assert driver.core.targets == {"a": 0}


def test_reload_drops_removed_groups_and_their_backoff() -> None:
    driver = booted(groups={"a": 1, "b": 1}, restart_backoff=5)
    b_pid = driver.core.active_workers("b")[0].pid
    driver.send(ChildExited(b_pid, 1))
    (b_pid,) = [w.pid for w in driver.core.active_workers("b")]
    driver.send(ChildExited(b_pid, 1))
    assert driver.core.restarts.history("b", 0) is not None
    driver.send(Reload(PoolConfig.of(groups={"a": 2, "c": 1})))
    assert driver.core.restarts.history("b", 0) is None
    assert sorted((w.group, w.slot) for w in driver.core.active_workers()) == [
        ("a", 0), ("a", 1), ("c", 0)]


def test_the_same_events_give_the_same_effects() -> None:
    def run() -> list:
        driver = booted(workers=2, timeout=3, restart_backoff=1)
        out = list(driver.effects)
        a, b = driver.pids()
        for event in [Observed(a, PERFORMING, heartbeat_at=1, at=1), ChildExited(b, 1, at=2),
                      Tick(5), Signal(Sig.HUP, at=6), Signal(Sig.QUIT, at=7), Tick(50)]:
            out += driver.send(event)
        return out

    assert run() == run()


def test_the_machines_have_only_their_rows_and_forget_the_dead() -> None:
    driver = booted(workers=2)
    worker = driver.core.workers[0]
    assert not hasattr(worker, "to_IDLE") and not hasattr(driver.core, "to_STOPPED")
    machine = driver.core.roster._machine
    assert list(machine.models) == driver.core.workers
    for pid in driver.pids():
        driver.send(ChildExited(pid, 1))
    driver.send(Signal(Sig.INT))
    for pid in driver.pids():
        driver.send(ChildExited(pid, -15))
    assert list(machine.models) == [] and driver.core.state is MasterState.STOPPED


def test_a_trigger_of_the_other_machine_is_a_missing_row() -> None:
    driver = booted(workers=1)
    with pytest.raises(CoreError, match=r"^master machine: no row for exited in state running$"):
        driver.core.fire(driver.core, "exited", 0)
    worker = driver.core.workers[0]
    with pytest.raises(CoreError, match=r"^worker machine: no row for booted in state spawning"):
        driver.core.fire(worker, "booted")


def test_one_perform_is_enough_to_retire_cleanly() -> None:
    driver = booted(workers=1, max_restarts=0)
    (pid,) = driver.pids()
    effects = driver.send(ChildExited(pid, 0, performs=1))
    assert Log("info", f"worker group=default slot=0 pid={pid} exited by itself after "
                       "1 performs") in effects
    assert driver.core.state is MasterState.RUNNING


def test_reload_keeps_the_backoff_of_groups_that_stay() -> None:
    driver = booted(groups={"a": 1}, restart_backoff=5)
    for _ in range(2):
        (pid,) = driver.pids()
        driver.send(ChildExited(pid, 1))
    history = driver.core.restarts.history("a", 0)
    driver.send(Reload(PoolConfig.of(groups={"a": 1, "b": 1}, restart_backoff=5)))
    assert driver.core.restarts.history("a", 0) is history
    assert list(driver.core.restarts.groups) == ["a"]
    assert [w.group for w in driver.core.active_workers()] == ["b"]


def test_the_core_says_exactly_what_it_refuses() -> None:
    from prefork.core import Event

    driver = booted(workers=1)
    with pytest.raises(CoreError) as caught:
        driver.send(Event(at=1.0))
    assert str(caught.value) == "master machine: no event Event(at=1.0) in state running"
    with pytest.raises(CoreError) as caught:
        driver.core.handle(Forked("default", 3, 555))
    assert str(caught.value) == (
        "master machine: Forked(at=None, group='default', slot=3, pid=555) answers no Spawn")


def test_winch_on_a_terminal_and_scaling_unknown_groups_say_why() -> None:
    driver = Driver(PoolConfig.of(groups={"a": 1, "b": 2}, setup_timeout=None))
    driver.send(Boot(at=0, has_terminal=True))
    assert driver.send(Signal(Sig.WINCH)) == [
        Log("info", "WINCH ignored: the master has a controlling terminal")]
    assert driver.send(StartWorker("zz")) == [
        Log("warning", "no group 'zz' to scale (groups: a, b)")]
    assert driver.send(StopWorker("zz")) == [
        Log("warning", "no group 'zz' to scale (groups: a, b)")]


def test_time_does_not_pass_once_stopped() -> None:
    driver = booted(workers=0)
    driver.send(Signal(Sig.QUIT))
    assert driver.core.state is MasterState.STOPPED
    with pytest.raises(CoreError) as caught:
        driver.send(Tick(5))
    assert str(caught.value) == "master machine: no row for Tick in state stopped"


def test_a_config_error_keeps_the_bad_value() -> None:
    from prefork.core import ConfigError

    with pytest.raises(ConfigError) as caught:
        PoolConfig.of(timeout=-2)
    assert (caught.value.option, caught.value.value) == ("timeout", -2)
    assert PoolConfig.of().groups[0].workers == 1


def test_a_supervisor_without_config_runs_one_default_worker() -> None:
    core = Supervisor()
    effects = core.handle(Boot(at=0))
    assert [e for e in effects if isinstance(e, Spawn)] == [Spawn("default", 0)]


def test_a_crash_exactly_one_period_ago_no_longer_counts() -> None:
    driver = booted(workers=1, max_restarts=1, restart_period=10, restart_backoff_max=0.1)
    (pid,) = driver.pids()
    driver.send(ChildExited(pid, 1, at=0))
    (pid,) = driver.pids()
    driver.send(ChildExited(pid, 1, at=10))
    assert driver.core.state is MasterState.RUNNING
    assert driver.core.restarts.intensities["default"].times == [10]


def test_without_a_crash_limit_old_crashes_are_forgotten_too() -> None:
    # a long-lived pool with no max_restarts must not keep every crash time forever
    driver = booted(workers=1, restart_period=10, restart_backoff_max=0.1)
    for at in range(0, 100, 5):
        (pid,) = driver.pids()
        driver.send(ChildExited(pid, 1, at=at))
        driver.send(Tick(now=at + 1))
    assert driver.core.restarts.intensities["default"].times == [90, 95]


def test_a_fork_failure_that_answers_no_spawn_is_named() -> None:
    driver = booted(workers=1)
    with pytest.raises(CoreError) as caught:
        driver.core.handle(ForkFailed("nope", 0, "EAGAIN"))
    assert str(caught.value) == (
        "master machine: ForkFailed(at=None, group='nope', slot=0, error='EAGAIN') "
        "answers no Spawn")


def test_a_stopped_worker_that_performed_does_not_wipe_a_later_backoff() -> None:
    # shrunk by hypothesis (TestPool, INV-6): the hung worker's final count arrived after
    # the fork of its replacement had failed, and refilled the slot before its back-off
    driver = booted(workers=1, timeout=1, restart_backoff=0.125, restart_backoff_max=0.125)
    core = driver.core
    (pid,) = driver.pids()
    driver.send(Observed(pid, PERFORMING, heartbeat_at=0, at=0))
    assert core.handle(Tick(1)) == [
        Log("info", f"worker group=default slot=0 pid={pid} performing -> stopping "
                    "(deadline_passed)"),
        Log("error", f"worker group=default slot=0 pid={pid} timed out; dumping its stack (ABRT)"),
        Kill(pid, Sig.ABRT), RunHook("before_fork", ("default", 0)), Spawn("default", 0),
        SetTitle("prefork master [prefork]: 2 workers in 1 pool (running)"),
        WakeAt(2.0)]  # KILL after the dump grace
    effects = core.handle(ForkFailed("default", 0, "EAGAIN"))
    assert core.restarts.respawn_at("default", 0) == 1.125
    effects = core.handle(ChildExited(pid, -6, performs=1))
    assert not [e for e in effects if isinstance(e, Spawn)]
    assert Spawn("default", 0) in core.handle(Tick(1.125))


# the bookkeeping behind the rules: what a recount alone cannot tell ---------------------


def test_a_tick_before_a_deadline_leaves_the_worker_alone() -> None:
    driver = booted(workers=1, setup_timeout=5)
    assert driver.send(Tick(now=3.0)) == []
    assert driver.pids("spawning")


def test_deadlines_that_pass_in_one_tick_fire_in_spawn_order() -> None:
    driver = booted(workers=3, setup_timeout=None, timeout=5)
    first, second, third = driver.pids()
    driver.send(Observed(third, PERFORMING, heartbeat_at=0.5, at=1.0))
    driver.send(Observed(first, PERFORMING, heartbeat_at=1.0, at=1.0))
    driver.send(Observed(second, PERFORMING, heartbeat_at=9.0, at=1.0))
    effects = driver.send(Tick(now=7.0))
    aborts = [e.pid for e in effects if isinstance(e, Kill) and e.signo is Sig.ABRT]
    assert aborts == [first, third]


def test_slots_due_at_once_are_refilled_in_group_order_then_slot_order() -> None:
    # "b" comes first in the config: its slot is spawned first, though its back-off ends
    # later and "a" sorts first by name
    driver = booted(groups={"b": 2, "a": 1}, restart_backoff=1, restart_backoff_max=10)
    for at in (1.0, 2.0):  # two crashes in a row each: a back-off of 1 s
        for group, slot in (("a", 0), ("b", 1)):
            [pid] = [w.pid for w in driver.core.active_workers(group) if w.slot == slot]
            driver.send(ChildExited(pid, 1, at=at + (0.5 if group == "b" else 0.0)))
    assert driver.core.next_deadline() == 3.0  # a.0's back-off ends first
    assert not driver.core.active_workers("a")
    effects = driver.send(Tick(now=4.0))  # the tick comes late: both are due
    assert [e for e in effects if isinstance(e, Spawn)] == [Spawn("b", 1), Spawn("a", 0)]


def test_the_wake_up_comes_when_a_back_off_ends() -> None:
    driver = booted(workers=1, restart_backoff=2)
    for at in (1.0, 1.5):
        (pid,) = driver.pids()
        driver.send(ChildExited(pid, 1, at=at))
    assert driver.effects[-1] == WakeAt(3.5)
    assert not driver.pids()
    assert [e for e in driver.send(Tick(now=3.5)) if isinstance(e, Spawn)] == [
        Spawn("default", 0)]


def test_a_due_slot_held_back_by_the_crash_limit_asks_for_no_wake_up() -> None:
    # the first of two forks fails and exceeds max_restarts=0; giving up waits for the
    # second answer, and the failed slot, due at once, is not spawned meanwhile
    core = Supervisor(PoolConfig.of(workers=2, max_restarts=0, setup_timeout=None))
    core.handle(Boot(at=0.0))
    effects = core.handle(ForkFailed("default", 0, "EAGAIN", at=1.0))
    assert not [e for e in effects if isinstance(e, Spawn | WakeAt)]
    assert core.recount() == []
    effects = core.handle(Forked("default", 1, 100, at=1.0))
    assert core.state is MasterState.TERMINATING
    assert Kill(100, Sig.TERM) in effects


# answers to effects: ReadConfig, and the hooks ------------------------------------------


def test_a_read_config_is_answered_before_anything_else() -> None:
    driver = booted(workers=1, config_file="pool.toml")
    assert ReadConfig("pool.toml") in driver.send(Signal(Sig.HUP, at=1))
    assert driver.core.state is MasterState.RUNNING  # waiting for the answer
    with pytest.raises(CoreError, match=r"before ReadConfig\('pool.toml'\) was answered "
                                        r"with ConfigLoaded or ConfigRejected"):
        driver.core.handle(Signal(Sig.TTIN))
    effects = driver.send(ConfigRejected("pool.toml", "bad", at=1))
    assert driver.core.state is MasterState.RELOADING
    assert Log("error", "config file pool.toml not reloaded, the running config stays: "
                        "bad") in effects
    with pytest.raises(CoreError, match="answers no ReadConfig"):
        driver.core.handle(ConfigRejected("pool.toml", "bad"))


def test_without_a_config_file_hup_reads_nothing() -> None:
    driver = booted(workers=1)
    effects = driver.send(Signal(Sig.HUP, at=1))
    assert not driver.of(ReadConfig) and driver.core.state is MasterState.RELOADING
    assert Spawn("default", 0) in effects


def test_the_hooks_come_in_order_around_spawns_and_reaps() -> None:
    driver = Driver(PoolConfig.of(workers=2, setup_timeout=None))
    effects = driver.core.handle(Boot(at=0))
    hooks_and_spawns = [e for e in effects if isinstance(e, RunHook | Spawn)]
    assert hooks_and_spawns == [
        RunHook("before_fork", ("default", 0)), Spawn("default", 0),
        RunHook("before_fork", ("default", 1)), Spawn("default", 1),
        RunHook("when_ready", ())]
    driver = booted(workers=1)
    (pid,) = driver.pids()
    effects = driver.send(ChildExited(pid, 3, at=1))
    assert effects.index(RunHook("on_worker_exit", (pid, 3, "default", 0,
                                                    Outcome.SETUP_FAILED, None))) < effects.index(
        RunHook("before_fork", ("default", 0)))


def test_status_is_answered_with_the_snapshot_and_changes_nothing() -> None:
    driver = booted(workers=2)
    before = driver.core.snapshot()
    now = replace(before, at=1)  # the clock moved to the request's time; nothing else did
    assert driver.send(Status("me", at=1)) == [Reply("me", now)]
    assert driver.core.snapshot() == now


# the shutdown report ---------------------------------------------------------------------


def test_the_shutdown_report_is_the_last_line_before_exit() -> None:
    driver = booted(workers=2, graceful_timeout=5)
    first, second = driver.pids()
    driver.send(Observed(first, PERFORMING, heartbeat_at=0, at=0))
    driver.send(Signal(Sig.QUIT, at=1))
    driver.send(ChildExited(second, 0, performs=3, at=2))
    driver.send(Tick(6))
    effects = driver.send(ChildExited(first, -9, performs=1, at=6))
    logs = [e for e in effects if isinstance(e, Log)]
    assert effects[-1] == Exit(0)
    assert effects[-2] == logs[-1] == Log(
        "info", "master stopped: 1 worker stopped gracefully, 0 stopped by TERM, 1 killed "
                "(graceful_timeout 1); 4 performs finished, 1 interrupted; exit status 0")


def test_the_report_counts_only_the_workers_the_stop_ended() -> None:
    driver = booted(workers=1, max_performs=1)
    (first,) = driver.pids()
    driver.send(ChildExited(first, 0, performs=1, at=1))  # retired while running
    (second,) = driver.pids()
    driver.send(Signal(Sig.INT, at=2))
    effects = driver.send(ChildExited(second, 0, at=3))
    assert Log("info", "master stopped: 0 workers stopped gracefully, 1 stopped by TERM, "
                       "0 killed; 0 performs finished, 0 interrupted; exit status 0") in effects


def test_the_master_has_only_its_tables_triggers_and_names_what_it_lacks() -> None:
    """No ``to_<state>`` shortcut (``auto_transitions`` off): every state change is a
    row of specs/master.md; and a name that is neither a trigger nor a part's callback
    is an ``AttributeError`` that says so."""
    master = Supervisor(PoolConfig.of(workers=1)).master
    assert not any(hasattr(master, f"to_{state.name}") for state in MasterState)
    with pytest.raises(AttributeError, match="'MasterModel' object has no attribute 'nosuch'"):
        master.nosuch  # noqa: B018
