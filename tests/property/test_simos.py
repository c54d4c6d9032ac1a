"""prefork.testing itself: the simulated OS does what its docstring promises.

The property tests trust the sim to be a faithful world; these pin each of its semantic
choices (and run the docstring's example), so a change to the sim shows here first.
"""

from __future__ import annotations

import dataclasses
import doctest

import pytest

import prefork.testing
from prefork.core import (
    ChildExited,
    CoreError,
    Forked,
    ForkFailed,
    Kill,
    Log,
    MasterState,
    Observed,
    PoolConfig,
    Sig,
    Signal,
    Spawn,
    StartWorker,
    Tick,
    WorkerState,
)
from prefork.testing import (
    KILL_STATUS,
    TERM_STATUS,
    ContractBroken,
    ProcState,
    SimError,
    SimOS,
)

M = MasterState


def booted(workers: int = 2, **options: object) -> SimOS:
    options.setdefault("setup_timeout", None)
    sim = SimOS(PoolConfig.of(workers=workers, **options), pid_space=4)
    sim.boot()
    return sim


def ready(sim: SimOS) -> None:
    for pid in sim.pids(ProcState.SPAWNING):
        sim.finish_setup(pid)
        sim.observe(pid)


def test_the_module_docstring_example_runs() -> None:
    result = doctest.testmod(prefork.testing)
    assert result.attempted > 0 and result.failed == 0


def test_spawns_are_answered_at_once_with_the_lowest_free_pids() -> None:
    sim = booted(3)
    assert sim.pids() == [100, 101, 102]
    assert [type(s.event) for s in sim.trace] == [type(sim.trace[0].event), Forked, Forked, Forked]
    assert all(p.state is ProcState.SPAWNING for p in sim.workers())
    assert [(p.group, p.slot) for p in sim.workers()] == [("default", 0), ("default", 1),
                                                          ("default", 2)]


def test_a_reaped_pid_is_the_next_one_handed_out() -> None:
    sim = booted(2)
    sim.crash(100)
    sim.reap(100)  # the core replaces the crashed worker at once: it gets pid 100 again
    assert sim.pids() == [100, 101]
    first, again = (p for p in sim.processes if p.pid == 100)
    assert first.state is ProcState.REAPED and again.serial != first.serial
    assert again.slot == 0


def test_a_full_pid_space_makes_forks_fail() -> None:
    sim = booted(4)
    mark = sim.mark()
    sim.command(StartWorker())  # a fifth worker: no pid left in a space of 4
    assert [type(e) for e in sim.events_since(mark)][:2] == [StartWorker, ForkFailed]
    with pytest.raises(SimError):
        sim.spawn_stray()


def test_armed_fork_failures_answer_the_next_spawns() -> None:
    sim = SimOS(PoolConfig.of(workers=1, setup_timeout=None))
    sim.fail_next_forks(1, "ENOMEM")
    sim.boot()
    failed = [s.event for s in sim.trace if isinstance(s.event, ForkFailed)]
    assert failed == [ForkFailed("default", 0, "ENOMEM", at=0.0)]
    assert sim.pids() == [100]  # the first failure is retried at once, and that fork works


def test_events_are_stamped_with_the_clock() -> None:
    sim = booted(1)
    sim.advance(2.5)
    sim.signal(Sig.USR1)
    assert sim.trace[-1].event == Signal(Sig.USR1, at=2.5)
    sim.tick()
    assert sim.trace[-1].event == Tick(2.5)
    with pytest.raises(SimError):
        sim.advance(-1)


def test_quit_idle_exits_at_once_performing_after_its_perform_spawning_after_setup() -> None:
    sim = booted(3)
    sim.finish_setup(100)
    sim.finish_setup(101)
    sim.start_perform(101)
    sim.signal(Sig.QUIT)
    idle, busy, starting = (sim.process(pid) for pid in (100, 101, 102))
    assert idle.zombie and idle.status == 0
    assert busy.state is ProcState.PERFORMING and busy.quitting
    assert starting.state is ProcState.SPAWNING and starting.quitting
    sim.end_perform(101)
    assert busy.zombie and busy.status == 0 and busy.performs == 1
    sim.finish_setup(102)
    assert starting.zombie and starting.status == 0 and starting.performs == 0
    assert [p.signals for p in (idle, busy, starting)] == [[Sig.QUIT]] * 3


def test_term_stops_at_once_and_kill_always_kills() -> None:
    sim = booted(2)
    ready(sim)
    sim.start_perform(100)
    sim.signal(Sig.TERM)
    assert sim.process(100).status == TERM_STATUS and sim.process(100).performs == 0
    assert sim.process(101).status == TERM_STATUS
    sim = booted(1, kill_timeout=1.0)
    sim.hang(100)
    sim.signal(Sig.TERM)
    assert sim.process(100).alive  # hung: ignores TERM
    sim.advance(1)
    sim.tick()
    assert sim.process(100).signals == [Sig.TERM, Sig.KILL]
    assert sim.process(100).status == KILL_STATUS


def test_abrt_dumps_and_kills_its_group_at_once_unless_hung() -> None:
    sim = booted(2, setup_timeout=5.0, kill_timeout=30.0)
    sim.hang(101)
    sim.advance(5)
    sim.tick()  # both setups timed out: ABRT
    dumped, hung = sim.process(100), sim.process(101)
    assert dumped.dumps == 1 and dumped.status == KILL_STATUS and dumped.exited_at == 5
    assert hung.alive and hung.dumps == 0 and hung.signals == [Sig.ABRT]
    with pytest.raises(SimError):
        sim.finish_setup(101)  # a hung process does nothing
    sim.advance(1)  # the dump grace, not kill_timeout
    sim.tick()
    assert hung.status == KILL_STATUS


def test_a_failed_perform_is_counted_in_the_slot_and_read_by_the_core() -> None:
    sim = booted(1)
    ready(sim)
    sim.start_perform(100)
    sim.fail_perform(100)
    process = sim.process(100)
    assert process.state is ProcState.IDLE and process.failures == 1
    assert process.performs == 0 and process.reported_failures == 0
    sim.observe(100)
    assert process.reported_failures == 1 and process.reported_state is WorkerState.IDLE
    assert sim.supervisor.worker_by_pid(100).failures == 1
    with pytest.raises(SimError):
        sim.fail_perform(100)  # idle: no perform to fail


def test_usr2_holds_and_cont_releases_and_usr1_reopens() -> None:
    sim = booted(1)
    ready(sim)
    sim.signal(Sig.USR2)
    with pytest.raises(SimError):
        sim.start_perform(100)
    sim.signal(Sig.CONT)
    sim.start_perform(100)
    sim.signal(Sig.USR1)
    assert sim.process(100).log_reopens == 1 and sim.log_reopens == 1


def test_a_zombie_keeps_its_pid_until_reaped_and_reaping_reads_its_slot_first() -> None:
    sim = booted(1)
    ready(sim)
    sim.start_perform(100)
    sim.advance(1)
    sim.end_perform(100)
    sim.exit(100, 0)
    assert sim.zombies() == [100]
    mark = sim.mark()
    sim.reap(100)
    assert sim.events_since(mark)[:2] == [
        Observed(100, WorkerState.IDLE, 0.0, 1, at=1.0), ChildExited(100, 0, 1, at=1.0)]
    assert sim.trace[mark + 1].process is not None
    assert sim.trace[mark + 1].process.state is ProcState.REAPED
    with pytest.raises(SimError):
        sim.reap(100)  # pid 100 is the replacement now, alive


def test_strays_are_reaped_like_children_and_never_observed() -> None:
    sim = booted(1)
    stray = sim.spawn_stray()
    with pytest.raises(SimError):
        sim.observe(stray)
    sim.exit(stray, 3)
    mark = sim.mark()
    sim.reap(stray)
    assert sim.events_since(mark) == [ChildExited(stray, 3, at=0.0)]
    assert any(isinstance(e, Log) and f"pid={stray}" in e.message
               for e in sim.effects_since(mark))


def test_a_kill_for_a_pid_the_core_does_not_own_is_caught() -> None:
    sim = booted(1)
    stray = sim.spawn_stray()
    with pytest.raises(ContractBroken):
        sim._deliver(Kill(stray, Sig.TERM))
    lenient = booted(1)
    lenient.strict = False
    lenient._deliver(Kill(123, Sig.TERM))
    assert lenient.misdirected == [(0.0, Kill(123, Sig.TERM))]


def test_reap_all_stops_with_the_master_and_a_late_reap_is_refused() -> None:
    sim = booted(1)
    stray = sim.spawn_stray()
    sim.exit(stray)
    sim.signal(Sig.QUIT)  # the idle-or-spawning worker: spawning, it quits after setup
    sim.finish_setup(100)
    sim.reap_all()
    assert sim.state is M.STOPPED and sim.zombies() == [stray]
    with pytest.raises(CoreError):
        sim.reap(stray)
    assert sim.trace[-1].error is not None


def test_run_until_ticks_at_every_wake_up() -> None:
    sim = booted(1, setup_timeout=5.0, kill_timeout=2.0)
    sim.run_until(10)
    ticks = [s.event.now for s in sim.trace if isinstance(s.event, Tick)]
    # 5: setup timeout (ABRT; a replacement is forked), 6: KILL to the unreaped first
    # worker after the dump grace, 10: the replacement's setup timeout
    assert ticks == [5.0, 6.0, 10.0]
    assert sim.now == 10


def test_effects_since_and_forked_since_slice_the_trace() -> None:
    sim = booted(1)
    mark = sim.mark()
    sim.command(StartWorker())
    assert sim.effects_since(mark, Spawn) == [Spawn("default", 1)]
    assert sim.forked_since(mark) == [101]
    assert "StartWorker" in sim.format_trace(last=2)


def test_replay_notices_a_core_that_answers_differently() -> None:
    sim = booted(2)
    sim.crash(100)
    sim.reap(100)
    sim.replay()  # the same events, the same effects
    step = sim.trace[1]
    sim.trace[1] = dataclasses.replace(step, effects=(*step.effects, Log("info", "extra")))
    with pytest.raises(AssertionError, match="replay differs"):
        sim.replay()
