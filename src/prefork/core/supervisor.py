"""The supervisor: the sans-IO entry point, routing events to the machines and policies.

Theory of operation
-------------------

``handle(event) -> list[Effect]`` is the whole interface. The supervisor owns the parts
and routes between them; it decides nothing a table or a policy can decide:

* the **master machine** (``master_machine``): its table and its model, whose rows
  decide what a signal or a command means in each state;
* the **roster** (``roster``): every worker, each a model of the worker machine
  (``worker_machine``), and the indexes over them, changed through one door;
* the **restart policy** (``restarts``): back-off per group and slot, and the restart
  intensity per group; spare-worker scaling (``scaling``) is a part of the master's
  model, reviewed after every event like the master's other decisions;
* a **context** (``context``): the clock, advanced from each event's time, and the
  outbox every callback appends its effects to.

An event becomes a trigger: a signal or a command fires a master trigger, a reading, a
reap or a passed deadline fires a worker trigger. Then the derived rules (``rules``)
apply what follows from the whole picture until nothing changes, as h11 does with its
derived state: the master's three reviews (stop when empty, finish a reload, give up on
a crash loop: rows whose guards decide), then retiring one surplus worker or filling the
missing slots. How each worker ended is a row of the worker table; what it costs is the
restart policy's answer, asked right after the row. Last, the supervisor tells the
service manager the pool's status line and asks for a wake-up (``WakeAt``) at its
earliest deadline, each whenever it changes (``status``).

The adapter keeps two promises, which the supervisor checks: it answers every ``Spawn``
(``Forked``/``ForkFailed``) and every ``ReadConfig`` (``ConfigLoaded``/``ConfigRejected``)
before it hands over any other event.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from transitions import MachineError

from prefork.core import events as ev
from prefork.core.context import MachineContext
from prefork.core.effects import Effect, Log, Notify, SetTitle, WakeAt
from prefork.core.errors import CoreError
from prefork.core.master_machine import (
    SIGNAL_TRIGGERS,
    SPAWNING_STATES,
    MasterModel,
    MasterState,
)
from prefork.core.restarts import RestartPolicy
from prefork.core.roster import Roster
from prefork.core.rules import settle
from prefork.core.settings import PoolConfig
from prefork.core.snapshot import Snapshot
from prefork.core.status import Told, notice, status_line
from prefork.core.tally import Tally
from prefork.core.worker_events import WorkerEvents
from prefork.core.worker_machine import Worker

# commands: the master trigger each fires, and the event's fields it carries
_COMMANDS: dict[type, tuple[str, Callable[[Any], tuple[Any, ...]]]] = {
    ev.StartWorker: ("start_worker_requested", lambda e: (e.group,)),
    ev.StopWorker: ("stop_worker_requested", lambda e: (e.group,)),
    ev.StopAll: ("stop_all_requested", lambda e: ()),
    ev.Scale: ("scale_requested", lambda e: (e.group, e.n)),
    ev.Reload: ("reload_requested", lambda e: (e.config,)),
    ev.ConfigLoaded: ("config_loaded", lambda e: (e.config,)),
    ev.ConfigRejected: ("config_rejected", lambda e: (e.path, e.why)),
    ev.Status: ("status_requested", lambda e: (e.request,)),
}
_SPAWN_ANSWERS = (ev.Forked, ev.ForkFailed)
_CONFIG_ANSWERS = (ev.ConfigLoaded, ev.ConfigRejected)


class Supervisor(WorkerEvents):
    """The pure core: feed it events with ``handle``, carry out the effects it returns.

    Nothing here reads a clock, forks or signals: time comes in on events and every
    action goes out as an effect.
    """

    def __init__(self, config: PoolConfig | None = None) -> None:
        config = config if config is not None else PoolConfig()
        self.context = MachineContext()
        self.restarts = RestartPolicy(config)
        self.tally = Tally()  # the counters the metrics show
        self.roster = Roster(config, self.context, self.restarts.respawn_at)
        self.master = MasterModel(config, self.context, self.roster, self.restarts,
                                  self.tally)
        self.told = Told(self.context)  # the status line and the wake-up time last told
        self._title: str | None = None  # the last process title set

    # the sans-IO entry point ------------------------------------------------------------

    def handle(self, event: ev.Event) -> list[Effect]:
        """Apply one event; return the effects the adapter must carry out, in order."""
        when = event.now if isinstance(event, ev.Tick) else event.at
        if when is not None:  # the clock only moves forward
            self.context.now = max(self.context.now, when)
        self._check_answers(event)
        self._dispatch(event)
        settle(self.master, self.fire)
        line = status_line(self.state, self.roster)
        if line is not None:
            self.told.tell("status", line, Notify(f"STATUS={line}"))
        self._retitle()
        when = self.next_deadline()
        self.told.tell("wake", when, WakeAt(when))
        return self.context.take()

    # what the outside may read ----------------------------------------------------------

    @property
    def state(self) -> MasterState:
        return self.master.state

    @property
    def config(self) -> PoolConfig:
        return self.master.config

    @property
    def now(self) -> float:
        return self.context.now

    @property
    def exit_code(self) -> int:
        return self.master.exit_code

    @property
    def targets(self) -> dict[str, int]:
        return self.roster.targets

    @property
    def workers(self) -> list[Worker]:
        return self.roster.workers

    def worker_by_pid(self, pid: int) -> Worker | None:
        return self.roster.by_pid(pid)

    def active_workers(self, group: str | None = None) -> list[Worker]:
        """Workers that count towards a target: spawning, idle or performing."""
        return self.roster.active(group)

    def snapshot(self) -> Snapshot:
        """A frozen picture of the pool now, for readers outside the core."""
        return self.master.snapshot()

    def next_deadline(self) -> float | None:
        """The earliest time the core must be woken (``None``: nothing to time)."""
        times = [when for when in (self.roster.deadlines.earliest(),) if when is not None]
        if self.state in SPAWNING_STATES:
            refill = self.roster.vacancies.earliest_after(self.now)
            if refill is not None:
                times.append(refill)
            scaling = self.master.scaling.wake_at()  # a growth step or a surplus pending
            if scaling is not None:
                times.append(scaling)
        return min(times, default=None)

    def recount(self) -> list[str]:
        """Where the roster's indexes differ from a count from scratch (for the tests)."""
        return self.roster.recount()

    # the one place a trigger is fired ------------------------------------------------------

    def fire(self, model: Any, trigger: str, *args: Any) -> None:
        """Fire ``trigger`` on ``model`` (the master or a worker); log a state change.

        A worker goes through the roster's door. A pair the table has no row for raises
        ``CoreError`` naming machine, worker, state and trigger; the state is left alone.
        """
        if isinstance(model, Worker):
            self.roster.change(model, trigger, *args)
            return
        before = model.state
        position = self.context.mark()
        method = getattr(model, trigger, None)
        try:
            if method is None:  # a trigger of the other machine
                raise MachineError(trigger)
            method(*args)
        except MachineError:
            raise CoreError(f"master machine: no row for {trigger} in state {before}") from None
        if model.state is not before:
            self._title = model.title()
            self.context.insert(position, [
                Log("info", f"master {before} -> {model.state} ({trigger})",
                    (("event", "master"), ("from", str(before)), ("to", str(model.state)),
                     ("trigger", trigger))),
                SetTitle(self._title),
            ])
            told = notice(model.state, self.now)
            if told is not None:  # after the row's effects: READY=1 follows boot's Spawns
                self.context.emit(told)

    # dispatch -------------------------------------------------------------------------

    def _check_answers(self, event: ev.Event) -> None:
        """The adapter answers a Spawn or a ReadConfig before handing over anything else."""
        unanswered = self.roster.first_unanswered()
        if unanswered is not None and not isinstance(event, _SPAWN_ANSWERS):
            group, slot = unanswered
            raise CoreError(f"master machine: {event!r} arrived before Spawn({group!r}, "
                            f"{slot}) was answered with Forked or ForkFailed")
        awaiting = self.master.awaiting_config
        if awaiting is not None and not isinstance(event, _CONFIG_ANSWERS):
            raise CoreError(f"master machine: {event!r} arrived before ReadConfig({awaiting!r})"
                            " was answered with ConfigLoaded or ConfigRejected")
        if awaiting is None and isinstance(event, _CONFIG_ANSWERS):
            raise CoreError(f"master machine: {event!r} answers no ReadConfig")

    def _dispatch(self, event: ev.Event) -> None:
        command = _COMMANDS.get(type(event))
        if command is not None:
            trigger, fields = command
            self.fire(self.master, trigger, *fields(event))
            if isinstance(event, _CONFIG_ANSWERS):
                self.master.awaiting_config = None
            return
        handler = self._HANDLERS.get(type(event))
        if handler is None:
            raise CoreError(f"master machine: no event {event!r} in state {self.state}")
        handler(self, event)

    def _on_boot(self, event: ev.Boot) -> None:
        self.master.has_terminal = event.has_terminal
        self.fire(self.master, "booted")

    def _on_signal(self, event: ev.Signal) -> None:
        trigger = SIGNAL_TRIGGERS.get(event.signo)
        if trigger is None:
            raise CoreError(f"master machine: no row for {event!r} in state {self.state}")
        self.fire(self.master, trigger, event.signo)

    _HANDLERS: ClassVar[dict[type, Callable[[Supervisor, Any], None]]] = {
        ev.Boot: _on_boot,
        ev.Signal: _on_signal,
        ev.Forked: WorkerEvents.on_forked,
        ev.ForkFailed: WorkerEvents.on_fork_failed,
        ev.ChildExited: WorkerEvents.on_child_exited,
        ev.Observed: WorkerEvents.on_observed,
        ev.MemorySampled: WorkerEvents.on_memory_sampled,
        ev.Tick: WorkerEvents.on_tick,
    }

    def _retitle(self) -> None:
        """``SetTitle`` whenever the master's title changes (its counts do, between the
        state changes that set it)."""
        if self.state is MasterState.BOOTING:
            return
        title = self.master.title()
        if title != self._title:
            self._title = title
            self.context.emit(SetTitle(title))
