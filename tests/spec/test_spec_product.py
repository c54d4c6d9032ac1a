"""The whole state x event product of both machines, against the spec's tables.

For every state, every trigger and every value of the guards that trigger's rows read, a
fixture brings a real ``Supervisor`` to that state through events (specs/README.md, "The
product test's fixtures"), and the trigger is fired through ``Supervisor.fire`` with
canonical arguments. The spec row that matches says what must happen: the destination and
the exact multiset of effects, the worker triggers a master row fires on each worker; with
no matching row, ``CoreError`` and nothing changed (the closure rule). As h2's
``test_state_machines.py`` does, one test per pair, so a hole in the table has a name.

``fire`` is the single dispatch point of the core. The test wraps it on the instance to
know which effects a master row produced itself and which came from the worker triggers it
fired (those belong to the worker rows and are checked there).
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from spec_runner import Adapter
from spec_tables import SpecRow, guard_text, guards_of, load, spec_rows

from prefork.core import (
    MASTER_TRIGGERS,
    SIGNAL_TRIGGERS,
    WORKER_TRIGGERS,
    Boot,
    ChildExited,
    CoreError,
    Effect,
    Exit,
    Kill,
    Log,
    MasterState,
    Notify,
    Observed,
    PoolConfig,
    ReadConfig,
    ReopenLogs,
    Reply,
    RunHook,
    SetTitle,
    Sig,
    Signal,
    Spawn,
    Supervisor,
    Tick,
    WakeAt,
    Worker,
    WorkerState,
)
from prefork.core.recycling import MemorySample
from prefork.core.settings import DEFAULT_GROUP

SETUP_TIMEOUT = 5.0
PERFORM_TIMEOUT = 10.0
GRACEFUL_TIMEOUT = 30.0
STRAY_PID = 999
FORWARDED = Sig.USR2


# fixtures: a supervisor in a given state, reached through events --------------------------

# The reviews' guards: decisions the supervisor acts on as soon as they hold, so no event
# can leave a master holding one at a chosen value; the fixture sets them on the model.
DECISIONS = ("all_workers_reaped", "old_generation_reaped", "restart_intensity_exceeded",
             "spawn_unanswered")
MAX_PERFORMS = 2
MAX_MEMORY = 200  # MiB
CONFIG_FILE = "pool.toml"


@dataclass
class Fixture:
    """A supervisor and the model (its master or one of its workers) a trigger is fired on."""

    adapter: Adapter
    model: Any

    @property
    def supervisor(self) -> Supervisor:
        return self.adapter.supervisor


def worker_fixture(state: WorkerState, told_to_quit: bool, *, set_up: bool = True,
                   timeout_passed: bool = False) -> Fixture:
    """A running pool of one worker, that worker brought to ``state``.

    Stopping after QUIT comes from TTOU (the master stays running, the worker is retired),
    sent while the worker performs or, not ``set_up``, while it still sets up; with
    ``timeout_passed`` the clock then moves (by a CHLD, which fires no deadline) to its
    setup or perform deadline, before its graceful one. Stopping after ABRT comes from a
    setup timeout (so it has timed out); dead from an ``exited`` row itself, fired
    directly, because the core forgets a worker as soon as the adapter reports it reaped.
    """
    adapter = Adapter(PoolConfig.of(workers=1, setup_timeout=SETUP_TIMEOUT,
                                    timeout=PERFORM_TIMEOUT, graceful_timeout=GRACEFUL_TIMEOUT,
                                    max_performs=MAX_PERFORMS, max_memory=MAX_MEMORY))
    adapter.feed(Boot())
    worker = adapter.worker(1)
    pid = adapter.pid_of(1)
    if state is WorkerState.SPAWNING:
        return Fixture(adapter, worker)
    if state is WorkerState.STOPPING and not told_to_quit:
        adapter.feed(Tick(SETUP_TIMEOUT))
        return Fixture(adapter, worker)
    reading = WorkerState.PERFORMING if state is WorkerState.PERFORMING else WorkerState.IDLE
    if state in (WorkerState.STOPPING, WorkerState.RETIRING):
        reading = WorkerState.PERFORMING
    recycle = "max_performs" if state is WorkerState.RETIRING else None
    if set_up:
        adapter.feed(Observed(pid, reading, heartbeat_at=0.0, recycle=recycle))
    if told_to_quit:
        adapter.feed(Signal(Sig.TTOU))
    if timeout_passed:
        adapter.feed(Signal(Sig.CHLD, at=PERFORM_TIMEOUT if set_up else SETUP_TIMEOUT))
    if state is WorkerState.DEAD:
        adapter.supervisor.fire(worker, "exited", 0, None)
    return Fixture(adapter, worker)


def master_fixture(state: MasterState, valuation: dict[str, bool]) -> Fixture:
    """A pool of ``workers=1`` brought to ``state`` through events.

    ``graceful_term`` and ``has_config_file`` come from the config, ``has_terminal`` from
    ``Boot``. Before Boot, and in ``paused`` (WINCH pauses only a master without a
    terminal), no event can set ``has_terminal``, so the fixture sets the attribute; the
    reviews' guards (``DECISIONS``) are set on the model too.
    """
    has_terminal = valuation.get("has_terminal", False)
    config_file = CONFIG_FILE if valuation.get("has_config_file") else None
    adapter = Adapter(PoolConfig.of(workers=1, config_file=config_file,
                                    graceful_term=valuation.get("graceful_term", False)))
    supervisor = adapter.supervisor
    if state is not MasterState.BOOTING:
        adapter.feed(Boot(has_terminal=has_terminal and state is not MasterState.PAUSED))
        adapter.feed(Observed(adapter.pid_of(1), WorkerState.IDLE))
    signal = {
        MasterState.PAUSED: Sig.WINCH, MasterState.RELOADING: Sig.HUP,
        MasterState.DRAINING: Sig.QUIT, MasterState.TERMINATING: Sig.INT,
        MasterState.STOPPED: Sig.INT,
    }.get(state)
    if signal is not None:
        adapter.feed(Signal(signal))
    if state in (MasterState.BOOTING, MasterState.PAUSED):
        supervisor.master.has_terminal = has_terminal
    if state is MasterState.RELOADING:
        adapter.feed(Observed(adapter.pid_of(2), WorkerState.IDLE))
    if state is MasterState.STOPPED:
        adapter.feed(ChildExited(adapter.pid_of(1), -15))
    assert supervisor.state is state, f"the fixture reached {supervisor.state}, not {state}"
    for name in DECISIONS:
        if name in valuation:
            setattr(supervisor.master, name, lambda *_, held=valuation[name]: held)
    if valuation.get("restart_intensity_exceeded"):  # the pool it names, as if past it
        supervisor.restarts.exhausted_group = lambda now: DEFAULT_GROUP
    return Fixture(adapter, supervisor.master)


# canonical arguments ----------------------------------------------------------------------


def exit_args(valuation: dict[str, bool]) -> tuple[int, int | None]:
    """A reap's status and final count of performs that give the guards these values."""
    if valuation.get("killed_by_signal"):
        status = -9
    else:
        status = 0 if valuation.get("exited_cleanly") else 1
    if valuation.get("reached_max_performs"):
        performs: int | None = MAX_PERFORMS
    else:
        performs = 1 if valuation.get("exited_cleanly") else None
    return status, performs


def worker_args(trigger: str, fixture: Fixture, valuation: dict[str, bool]
                ) -> tuple[Any, ...]:
    worker: Worker = fixture.model
    return {
        "forked": (worker.pid,),
        "fork_failed": ("EAGAIN",),
        "reported_spawning": (fixture.supervisor.now, 0),
        "reported_idle": (fixture.supervisor.now, 0),
        "reported_performing": (fixture.supervisor.now, 0),
        "signal_forwarded": (FORWARDED,),
        "performs_failed": (worker.failures + 1,),
        "exited": exit_args(valuation),
        "recycle_requested": ("max_performs", None),
        "memory_sampled": memory_args(worker, valuation),
    }.get(trigger, ())


def memory_args(worker: Worker, valuation: dict[str, bool]) -> tuple[float]:
    """A sample that gives the memory guards these values: over the limit or not, and
    growing (over, larger than the sample before, inside the same perform), for which
    the sample before is set on the model, as a fixture sets a guard no event can."""
    if valuation.get("growing_in_a_perform"):
        worker.memory = MemorySample(MAX_MEMORY + 10, worker.performs, True)
        worker.busy = True
    over = valuation.get("over_memory_limit", valuation.get("growing_in_a_perform", False))
    return (MAX_MEMORY + 50 if over else MAX_MEMORY - 50,)


def master_args(trigger: str, fixture: Fixture, valuation: dict[str, bool]
                ) -> tuple[Any, ...]:
    signals = {name: (signo,) for signo, name in SIGNAL_TRIGGERS.items()}
    return {
        **signals,
        "reload_requested": (fixture.supervisor.config,),
        "config_loaded": (fixture.supervisor.config,),
        "config_rejected": (CONFIG_FILE, "line 3: workers must be a whole number >= 0"),
        "status_requested": ("who-asked",),
        "start_worker_requested": (None,),
        "stop_worker_requested": (None,),
        "scale_requested": ("default", 2),
        "stray_child_exited": (STRAY_PID, 0),
    }.get(trigger, ())


# recording a firing -----------------------------------------------------------------------


@dataclass
class Firing:
    """What one ``fire`` did: the row's own effects and the worker triggers it fired."""

    own: list[Effect] = field(default_factory=list)
    fired: Counter[tuple[int, str]] = field(default_factory=Counter)


def fire_recorded(supervisor: Supervisor, model: Any, trigger: str, args: tuple[Any, ...]
                  ) -> Firing:
    """Fire ``trigger`` on ``model``; a master row's firings of worker triggers (through
    the roster's door) are counted, and their effects left to the worker rows."""
    firing = Firing()
    nested: set[int] = set()
    roster, context = supervisor.roster, supervisor.context
    door: Callable[..., None] = roster.change

    def recording_door(worker: Worker, inner_trigger: str, *inner_args: Any) -> None:
        start = context.mark()
        door(worker, inner_trigger, *inner_args)
        firing.fired[(id(worker), inner_trigger)] += 1
        nested.update(id(effect) for effect in context.since(start))

    start = context.mark()
    if not isinstance(model, Worker):
        roster.change = recording_door  # type: ignore[method-assign]
    try:
        supervisor.fire(model, trigger, *args)
    finally:
        roster.__dict__.pop("change", None)
    firing.own = [e for e in context.since(start) if id(e) not in nested]
    return firing


def normalise(effect: Effect, own_pid: int | None) -> str:
    """An effect in the words of the effects column (specs/README.md)."""
    if isinstance(effect, Log):
        return f"Log({effect.level})"
    if isinstance(effect, Kill):
        target = "" if effect.pid == own_pid else f"pid {effect.pid}, "
        return f"Kill({target}{effect.signo})"
    if isinstance(effect, RunHook):
        return f"RunHook({effect.name})"
    names = {SetTitle: "SetTitle", ReopenLogs: "ReopenLogs", Exit: "Exit", Spawn: "Spawn",
             WakeAt: "WakeAt", ReadConfig: "ReadConfig", Reply: "Reply", Notify: "Notify"}
    return names.get(type(effect), repr(effect))


# the cases --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One (machine, state, trigger, guard values) with the spec row that must apply."""

    machine: str
    state: str
    trigger: str
    valuation: tuple[tuple[str, bool], ...]
    row: SpecRow | None
    matches: tuple[str, ...] = ()

    @property
    def test_id(self) -> str:
        outcome = f"-> {self.row.shape.dest} ({self.row.row.where.removeprefix('specs/')})" \
            if self.row else "-> CoreError"
        return f"{self.machine} {self.state} {self.trigger}{guard_text(self.valuation)} " \
            f"{outcome}"


def reachable(machine: str, state: str, valuation: dict[str, bool]) -> bool:
    """Only a stopping (or dead) worker can have been told to quit or have timed out, or
    see its timeout pass while it stops; a worker is set up once ready, never while
    spawning; and a status is 0 or a signal's, never both."""
    if machine != "worker":
        return True
    stopped = state in ("stopping", "dead")
    told = (valuation.get("told_to_quit") or valuation.get("timed_out")
            or valuation.get("timeout_passed"))
    set_up = valuation.get("set_up")
    if valuation.get("growing_in_a_perform") and valuation.get("over_memory_limit") is False:
        return False  # growing is over the limit
    return (stopped or not told) and not (
        valuation.get("exited_cleanly") and valuation.get("killed_by_signal")) and not (
        (set_up is False and state in ("idle", "performing"))
        or (set_up is True and state == "spawning"))


def cases() -> list[Any]:
    params = []
    machines = [("worker", "worker.md", WorkerState, WORKER_TRIGGERS),
                ("master", "master.md", MasterState, MASTER_TRIGGERS)]
    for machine, spec, states, triggers in machines:
        rows = spec_rows(load(spec), (s.value for s in states), triggers)
        for state, trigger in itertools.product([s.value for s in states], triggers):
            guards = guards_of(rows, trigger)
            for values in itertools.product((True, False), repeat=len(guards)):
                valuation = dict(zip(guards, values, strict=True))
                if not reachable(machine, state, valuation):
                    continue
                matching = [row for row in rows
                            if row.shape.trigger == trigger and row.allows(state, valuation)]
                case = Case(machine, state, trigger, tuple(sorted(valuation.items())),
                            matching[0] if matching else None,
                            tuple(row.row.where for row in matching))
                params.append(pytest.param(case, id=case.test_id))
    return params


def build(case: Case) -> Fixture:
    values = dict(case.valuation)
    if case.machine == "worker":
        # without the guard in play, a stopping (or dead) worker is one that was sent QUIT;
        # one that timed out was not
        told = values.get("told_to_quit", case.state in ("stopping", "dead")
                          and not values.get("timed_out", False))
        return worker_fixture(WorkerState(case.state), told,
                              set_up=values.get("set_up", case.state != "spawning"),
                              timeout_passed=values.get("timeout_passed", False))
    return master_fixture(MasterState(case.state), values)


@pytest.mark.parametrize("case", cases())
def test_state_times_event(case: Case) -> None:
    assert len(case.matches) <= 1, f"several spec rows match: {', '.join(case.matches)}"
    fixture = build(case)
    supervisor, model = fixture.supervisor, fixture.model
    arguments = worker_args if case.machine == "worker" else master_args
    args = arguments(case.trigger, fixture, dict(case.valuation))
    workers = list(supervisor.workers)
    states_before = [(w, w.state) for w in workers]
    queued_before = supervisor.context.mark()

    if case.row is None:
        with pytest.raises(CoreError):
            supervisor.fire(model, case.trigger, *args)
        assert model.state.value == case.state, "a pair without a row changed the state"
        assert supervisor.context.mark() == queued_before, "a pair without a row emitted effects"
        assert [(w, w.state) for w in workers] == states_before, "a worker changed state"
        return

    row = case.row
    where = row.row.where
    firing = fire_recorded(supervisor, model, case.trigger, args)

    dest = case.state if row.shape.dest == "=" else row.shape.dest
    assert model.state.value == dest, f"{where}: expected {dest}, got {model.state}"

    moved = dest != case.state
    signo = next((a for a in args if isinstance(a, Sig)), None)
    own_pid = model.pid if isinstance(model, Worker) else None
    expected = Counter(
        item.effect.replace("signo", str(signo))
        for item in row.effects
        if item.effect is not None and (moved or not item.moved_only)
    )
    actual = Counter(normalise(effect, own_pid) for effect in firing.own)
    assert actual == expected, (
        f"{where}: effects {sorted(actual.elements())}, the spec says "
        f"{sorted(expected.elements())}\n    {firing.own}"
    )

    each = [item.each_worker for item in row.effects if item.each_worker is not None]
    wanted = Counter((id(worker), trigger) for worker in workers for trigger in each)
    assert firing.fired == wanted, (
        f"{where}: fired {sorted((t, n) for (_, t), n in firing.fired.items())} on the "
        f"workers, the spec says each of the {len(workers)} workers gets {each}"
    )


def test_every_state_and_trigger_is_covered() -> None:
    """The product really is the whole product: no state and no trigger is left out."""
    seen = {(p.values[0].machine, p.values[0].state, p.values[0].trigger) for p in cases()}
    expected = {("worker", s.value, t) for s in WorkerState for t in WORKER_TRIGGERS}
    expected |= {("master", s.value, t) for s in MasterState for t in MASTER_TRIGGERS}
    assert seen == expected
