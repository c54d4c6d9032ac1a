"""The master machine and the supervisor that drives both machines.

Theory of operation
-------------------

The master is up (``running``, ``paused`` or ``reloading``) or leaving (``draining``
or ``terminating``) or gone (``stopped``). Up states keep each group at its target:
``running`` spawns what is missing, ``paused`` (WINCH) keeps the targets but runs no
workers, ``reloading`` (HUP) runs a new generation while the old one drains, and turns
back into ``running`` when the last old worker is reaped. Leaving states never spawn;
they wait for every worker to be reaped, and only then does the master reach
``stopped`` and ask the adapter to ``Exit``. Draining is graceful (QUIT: each worker
finishes its perform), terminating is quick (TERM), and a quick stop can overtake a
graceful one but never the other way round.

Every signal and command is a trigger, and every (state, trigger) pair the master can
meet is a row below, even when the row does nothing but log that the request was
ignored: the tables are the whole behaviour, and a pair without a row raises
``CoreError``. Rows that change the master's state log the change and set the process
title; rows that act on workers fire worker triggers, one worker at a time.

Rules that follow from the whole picture rather than from one event (a missing worker
is spawned, a worker beyond its group's target is retired, the last reaped worker lets
a leaving master stop, too many crashes make it give up) are not rows: they live in
``Supervisor.settle``, which applies them after every event until nothing changes, as
h11 does with its derived state.

The supervisor is the sans-IO entry point: ``handle(event) -> list[Effect]``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import Any, ClassVar

from transitions import Machine, MachineError

from prefork.core import events as ev
from prefork.core.config import PoolConfig
from prefork.core.effects import Effect, Exit, Log, ReopenLogs, SetTitle, Spawn, WakeAt
from prefork.core.errors import CoreError
from prefork.core.signals import Sig
from prefork.core.worker import WORKER_TRANSITIONS, Worker, WorkerState


class MasterState(StrEnum):
    """The states of the master machine (the names used in specs/master.md)."""

    BOOTING = "booting"
    RUNNING = "running"
    PAUSED = "paused"
    RELOADING = "reloading"
    DRAINING = "draining"
    TERMINATING = "terminating"
    STOPPED = "stopped"

    def __str__(self) -> str:
        return self.value


M = MasterState
UP = [M.RUNNING, M.PAUSED, M.RELOADING]
LEAVING = [M.DRAINING, M.TERMINATING]
ALIVE = [*UP, *LEAVING]
SPAWNING_STATES = (M.RUNNING, M.RELOADING)

# requests that only make sense while the master is up; leaving, it logs and ignores them
_UP_ONLY = [
    "hup_received", "reload_requested", "winch_received", "ttin_received", "ttou_received",
    "start_worker_requested", "stop_worker_requested", "scale_requested",
]

MASTER_TRANSITIONS: list[dict[str, Any]] = [
    # booting
    {"trigger": "booted", "source": M.BOOTING, "dest": M.RUNNING},
    # graceful stop
    {"trigger": "quit_received", "source": UP, "dest": M.DRAINING, "after": "stop_all_workers"},
    {"trigger": "stop_all_requested", "source": UP, "dest": M.DRAINING,
     "after": "stop_all_workers"},
    {"trigger": "term_received", "source": UP, "dest": M.DRAINING,
     "conditions": "graceful_term", "after": "stop_all_workers"},
    {"trigger": "quit_received", "source": LEAVING, "dest": None},
    {"trigger": "stop_all_requested", "source": LEAVING, "dest": None},
    {"trigger": "term_received", "source": M.DRAINING, "dest": None,
     "conditions": "graceful_term"},
    # quick stop
    {"trigger": "term_received", "source": [*UP, M.DRAINING], "dest": M.TERMINATING,
     "unless": "graceful_term", "after": "terminate_all_workers"},
    {"trigger": "int_received", "source": [*UP, M.DRAINING], "dest": M.TERMINATING,
     "after": "terminate_all_workers"},
    {"trigger": "term_received", "source": M.TERMINATING, "dest": None},
    {"trigger": "int_received", "source": M.TERMINATING, "dest": None},
    # reload
    {"trigger": "hup_received", "source": UP, "dest": M.RELOADING, "after": "replace_workers"},
    {"trigger": "reload_requested", "source": UP, "dest": M.RELOADING,
     "after": "take_config_and_replace_workers"},
    {"trigger": "reload_finished", "source": M.RELOADING, "dest": M.RUNNING},
    # pause
    {"trigger": "winch_received", "source": [M.RUNNING, M.RELOADING], "dest": M.PAUSED,
     "unless": "has_terminal", "after": "stop_all_workers"},
    {"trigger": "winch_received", "source": M.PAUSED, "dest": None, "unless": "has_terminal"},
    {"trigger": "winch_received", "source": UP, "dest": None, "conditions": "has_terminal",
     "after": "log_winch_ignored"},
    # sizing
    {"trigger": "ttin_received", "source": UP, "dest": None, "after": "grow_first_group"},
    {"trigger": "ttou_received", "source": UP, "dest": None, "after": "shrink_first_group"},
    {"trigger": "start_worker_requested", "source": UP, "dest": None, "after": "grow_group"},
    {"trigger": "stop_worker_requested", "source": UP, "dest": None, "after": "shrink_group"},
    {"trigger": "scale_requested", "source": UP, "dest": None, "after": "scale_group"},
    # requests that make no sense while leaving
    *({"trigger": trigger, "source": LEAVING, "dest": None, "after": "log_ignored"}
      for trigger in _UP_ONLY),
    # passed on to the workers
    {"trigger": "usr1_received", "source": ALIVE, "dest": None, "after": "reopen_logs"},
    {"trigger": "usr2_received", "source": ALIVE, "dest": None, "after": "forward_to_workers"},
    {"trigger": "cont_received", "source": ALIVE, "dest": None, "after": "forward_to_workers"},
    # children
    {"trigger": "chld_received", "source": ALIVE, "dest": None},
    {"trigger": "stray_child_exited", "source": ALIVE, "dest": None, "after": "log_stray_child"},
    {"trigger": "restarts_exhausted", "source": SPAWNING_STATES, "dest": M.TERMINATING,
     "after": "give_up"},
    {"trigger": "workers_gone", "source": LEAVING, "dest": M.STOPPED, "after": "exit"},
]

MASTER_TRIGGERS: tuple[str, ...] = tuple(
    dict.fromkeys(row["trigger"] for row in MASTER_TRANSITIONS)
)

# which master trigger each signal fires
SIGNAL_TRIGGERS: dict[Sig, str] = {
    sig: f"{sig.value.lower()}_received"
    for sig in (Sig.QUIT, Sig.TERM, Sig.INT, Sig.HUP, Sig.WINCH, Sig.TTIN, Sig.TTOU,
                Sig.USR1, Sig.USR2, Sig.CONT, Sig.CHLD)
}


def new_worker_machine() -> Machine:
    """The one machine every worker of a supervisor is a model of."""
    return Machine(
        model=None, states=WorkerState, transitions=WORKER_TRANSITIONS,
        initial=WorkerState.SPAWNING, auto_transitions=False, ignore_invalid_triggers=False,
    )


def new_master_machine(model: Any) -> Machine:
    """The master machine, with the supervisor as its model."""
    return Machine(
        model=model, states=MasterState, transitions=MASTER_TRANSITIONS,
        initial=MasterState.BOOTING, auto_transitions=False, ignore_invalid_triggers=False,
    )


@dataclass
class SlotHistory:
    """Crash history of one slot: consecutive failures and when it may be refilled."""

    failures: int = 0
    respawn_at: float = 0.0


class Supervisor:
    """The pure core: feed it events with ``handle``, carry out the effects it returns.

    It owns the master machine (it is that machine's model) and one worker machine
    shared by all its workers. Nothing here reads a clock, forks or signals: time comes
    in on events and every action goes out as an effect.
    """

    state: MasterState

    def __init__(self, config: PoolConfig | None = None) -> None:
        self.config = config if config is not None else PoolConfig()
        self.targets: dict[str, int] = {g.name: g.workers for g in self.config.groups}
        self.now = 0.0
        self.generation = 0
        self.has_terminal = False
        self.exit_code = 0
        self.workers: list[Worker] = []
        self.slots: dict[tuple[str, int], SlotHistory] = {}
        self.crash_times: list[float] = []
        self._by_pid: dict[int, Worker] = {}
        self._outbox: list[Effect] = []
        self._wake_at: float | None = None
        self._worker_machine = new_worker_machine()
        new_master_machine(self)

    # the sans-IO entry point ------------------------------------------------------------

    def handle(self, event: ev.Event) -> list[Effect]:
        """Apply one event; return the effects the adapter must carry out, in order."""
        self._advance_clock(event)
        self._check_spawns_answered(event)
        self._dispatch(event)
        self.settle()
        self._ask_for_wake_up()
        effects, self._outbox = self._outbox, []
        return effects

    def emit(self, effect: Effect) -> None:
        """Queue an effect (the machines' callbacks call this, and only this)."""
        self._outbox.append(effect)

    # introspection --------------------------------------------------------------------

    def worker_by_pid(self, pid: int) -> Worker | None:
        return self._by_pid.get(pid)

    def active_workers(self, group: str | None = None) -> list[Worker]:
        """Workers that count towards a target: spawning, idle or performing."""
        return [w for w in self.workers if w.is_active and group in (None, w.group)]

    def next_deadline(self) -> float | None:
        """The earliest time the core must be woken (``None``: nothing to time)."""
        times = [w.deadline for w in self.workers if w.deadline is not None]
        if self.state in SPAWNING_STATES:
            times += [when for _, _, when in self._missing_slots() if when > self.now]
        return min(times, default=None)

    # dispatch -------------------------------------------------------------------------

    def _advance_clock(self, event: ev.Event) -> None:
        when = event.now if isinstance(event, ev.Tick) else event.at
        if when is not None:
            self.now = max(self.now, when)

    def _check_spawns_answered(self, event: ev.Event) -> None:
        if isinstance(event, ev.Forked | ev.ForkFailed):
            return
        for worker in self._unforked():
            raise CoreError(
                f"master machine: {event!r} arrived before Spawn({worker.group!r}, "
                f"{worker.slot}) was answered with Forked or ForkFailed"
            )

    def _unforked(self) -> list[Worker]:
        """Workers whose Spawn the adapter has not answered yet (it will, before any
        other event): nothing can be sent to them, so rules that act on workers wait."""
        return [w for w in self.workers if w.pid is None]

    def _dispatch(self, event: ev.Event) -> None:
        handler = self._HANDLERS.get(type(event))
        if handler is None:
            raise CoreError(f"master machine: no event {event!r} in state {self.state}")
        handler(self, event)

    def _on_boot(self, event: ev.Boot) -> None:
        self.has_terminal = event.has_terminal
        self.fire(self, "booted")

    def _on_signal(self, event: ev.Signal) -> None:
        trigger = SIGNAL_TRIGGERS.get(event.signo)
        if trigger is None:
            raise CoreError(f"master machine: no row for {event!r} in state {self.state}")
        self.fire(self, trigger, event.signo)

    def _on_forked(self, event: ev.Forked) -> None:
        worker = self._unanswered_spawn(event.group, event.slot, event)
        if event.pid in self._by_pid:
            raise CoreError(f"master machine: {event!r} reuses the pid of a live worker")
        self._by_pid[event.pid] = worker
        self.fire(worker, "forked", event.pid)

    def _on_fork_failed(self, event: ev.ForkFailed) -> None:
        worker = self._unanswered_spawn(event.group, event.slot, event)
        self.fire(worker, "fork_failed", event.error)
        self._count_crash(worker)
        self._bury(worker)

    def _on_child_exited(self, event: ev.ChildExited) -> None:
        worker = self._by_pid.get(event.pid)
        if worker is None:
            self.fire(self, "stray_child_exited", event.pid, event.status)
            return
        if event.performs is not None:
            worker.count_performs(event.performs)
            self._end_crash_run_if_healthy(worker)
        was_active = worker.is_active
        self.fire(worker, "exited")
        if was_active:
            self._account_for_exit(worker, event.status)
        self._bury(worker)

    def _on_observed(self, event: ev.Observed) -> None:
        worker = self._by_pid.get(event.pid)
        if worker is None:
            raise CoreError(f"master machine: {event!r} names no live worker")
        trigger = f"reported_{WorkerState(event.state).value}"
        self.fire(worker, trigger, event.heartbeat_at, event.performs)
        self._end_crash_run_if_healthy(worker)

    def _end_crash_run_if_healthy(self, worker: Worker) -> None:
        """A live worker that performed shows its slot works: a later crash starts a new run.

        Only a live one: a worker already told to stop (timed out, or of an older
        generation) may report performs done before the slot's latest failures, and must
        not wipe the back-off those failures earned.
        """
        if worker.performs > 0 and worker.is_active:
            self.slots.pop((worker.group, worker.slot), None)

    def _on_tick(self, event: ev.Tick) -> None:
        if self.state is M.STOPPED:  # the adapter exits on Exit: time no longer passes here
            raise CoreError("master machine: no row for Tick in state stopped")
        for worker in list(self.workers):
            if worker.deadline is not None and worker.deadline <= self.now:
                was_active = worker.is_active
                self.fire(worker, "deadline_passed")
                if was_active:  # a timeout is a crash now: its replacement is backed off
                    self._count_crash(worker)

    def _on_start_worker(self, event: ev.StartWorker) -> None:
        self.fire(self, "start_worker_requested", event.group)

    def _on_stop_worker(self, event: ev.StopWorker) -> None:
        self.fire(self, "stop_worker_requested", event.group)

    def _on_stop_all(self, event: ev.StopAll) -> None:
        self.fire(self, "stop_all_requested")

    def _on_scale(self, event: ev.Scale) -> None:
        self.fire(self, "scale_requested", event.group, event.n)

    def _on_reload(self, event: ev.Reload) -> None:
        self.fire(self, "reload_requested", event.config)

    _HANDLERS: ClassVar[dict[type, Callable[[Supervisor, Any], None]]] = {
        ev.Boot: _on_boot,
        ev.Signal: _on_signal,
        ev.Forked: _on_forked,
        ev.ForkFailed: _on_fork_failed,
        ev.ChildExited: _on_child_exited,
        ev.Observed: _on_observed,
        ev.Tick: _on_tick,
        ev.StartWorker: _on_start_worker,
        ev.StopWorker: _on_stop_worker,
        ev.StopAll: _on_stop_all,
        ev.Scale: _on_scale,
        ev.Reload: _on_reload,
    }

    def fire(self, model: Any, trigger: str, *args: Any) -> None:
        """Fire ``trigger`` on ``model`` (the supervisor or a worker); log a state change.

        A pair the table has no row for raises ``CoreError`` naming machine, worker,
        state and trigger; the model's state is left as it was.
        """
        before = model.state
        position = len(self._outbox)
        method = getattr(model, trigger, None)
        if method is None:  # a trigger of the other machine
            raise CoreError(self._no_row(model, trigger, before))
        try:
            method(*args)
        except MachineError:
            raise CoreError(self._no_row(model, trigger, before)) from None
        if model.state is not before:
            self._outbox[position:position] = self._transition_effects(model, before, trigger)

    def _no_row(self, model: Any, trigger: str, state: Enum) -> str:
        if isinstance(model, Worker):
            return f"worker machine: no row for {trigger} in state {state} ({model.label})"
        return f"master machine: no row for {trigger} in state {state}"

    def _transition_effects(self, model: Any, before: Enum, trigger: str) -> list[Effect]:
        """The log line (and, for the master, the title) that announce a state change.

        They go before the effects of the row's callbacks, so the log reads
        "what changed" and then "what was done about it".
        """
        if isinstance(model, Worker):
            return [Log("info", f"worker {model.label} {before} -> {model.state} ({trigger})")]
        return [
            Log("info", f"master {before} -> {self.state} ({trigger})"),
            SetTitle(f"{self.config.name} master: {self.state}"),
        ]

    # worker bookkeeping ---------------------------------------------------------------

    def _unanswered_spawn(self, group: str, slot: int, event: ev.Event) -> Worker:
        for worker in self.workers:
            if worker.pid is None and worker.group == group and worker.slot == slot:
                return worker
        raise CoreError(f"master machine: {event!r} answers no Spawn")

    def _spawn(self, group: str, slot: int) -> None:
        worker = Worker(self, group, slot, self.generation)
        self._worker_machine.add_model(worker)
        self.workers.append(worker)
        self.emit(Spawn(group, slot))

    def _bury(self, worker: Worker) -> None:
        """Forget a dead worker: it leaves the machine, the pid index and the list."""
        self._worker_machine.remove_model(worker)
        self.workers.remove(worker)
        if worker.pid is not None:
            del self._by_pid[worker.pid]

    def _account_for_exit(self, worker: Worker, status: int) -> None:
        """A worker nobody told to stop has exited: a retirement or a crash."""
        retired = status == 0 and worker.performs > 0
        if retired:  # its performs already ended the slot's crash run
            self.emit(Log("info", f"worker {worker.label} exited by itself after "
                                  f"{worker.performs} performs"))
            return
        self.emit(Log("error", f"worker {worker.label} crashed ({describe_status(status)})"))
        self._count_crash(worker)

    def _count_crash(self, worker: Worker) -> None:
        """Back off the slot's next spawn and remember the crash for the intensity limit."""
        history = self.slots.setdefault((worker.group, worker.slot), SlotHistory())
        uptime = self.now - (worker.forked_at if worker.forked_at is not None else self.now)
        if uptime >= self.config.restart_backoff_max:  # it ran long enough to count as well
            history.failures = 0
        history.failures += 1
        delay = backoff_delay(history.failures, self.config)
        history.respawn_at = self.now + delay
        if delay > 0:
            self.emit(Log("warning", f"slot {worker.group}.{worker.slot} failed "
                                     f"{history.failures} times in a row; respawn in {delay:g}s"))
        self.crash_times.append(self.now)

    # derived rules --------------------------------------------------------------------

    def settle(self) -> None:
        """Apply the derived rules until none of them has anything left to do."""
        while self._apply_one_rule():
            pass

    def _apply_one_rule(self) -> bool:
        for rule in (self._stop_when_empty, self._finish_reload, self._give_up_on_crash_loop,
                     self._retire_surplus, self._fill_missing_slots):
            if rule():
                return True
        return False

    def _stop_when_empty(self) -> bool:
        if self.state in LEAVING and not self.workers:
            self.fire(self, "workers_gone")
            return True
        return False

    def _finish_reload(self) -> bool:
        if self.state is M.RELOADING and not any(
            w.generation < self.generation for w in self.workers
        ):
            self.fire(self, "reload_finished")
            return True
        return False

    def _give_up_on_crash_loop(self) -> bool:
        if self.state in SPAWNING_STATES and self._too_many_crashes() and not self._unforked():
            self.fire(self, "restarts_exhausted")
            return True
        return False

    def _too_many_crashes(self) -> bool:
        """More than ``max_restarts`` crashes within the last ``restart_period`` seconds."""
        limit = self.config.max_restarts
        if limit is None:
            return False
        since = self.now - self.config.restart_period
        self.crash_times = [t for t in self.crash_times if t > since]
        return len(self.crash_times) > limit

    def _retire_surplus(self) -> bool:
        if self.state not in UP:
            return False
        for worker in self.active_workers():
            if self._is_surplus(worker):
                self.fire(worker, "stop_requested")
                return True
        return False

    def _is_surplus(self, worker: Worker) -> bool:
        # a reload stops every worker, so an active worker's group is always a target
        if self.state is M.PAUSED or worker.slot >= self.targets[worker.group]:
            return True
        limit = self.config.max_performs
        return limit is not None and worker.performs >= limit

    def _fill_missing_slots(self) -> bool:
        if self.state not in SPAWNING_STATES or self._too_many_crashes():
            return False
        due = [(group, slot) for group, slot, when in self._missing_slots() if when <= self.now]
        for group, slot in due:
            self._spawn(group, slot)
        return bool(due)

    def _missing_slots(self) -> list[tuple[str, int, float]]:
        """(group, slot, earliest spawn time) for every slot without an active worker."""
        filled = {(w.group, w.slot) for w in self.workers if w.is_active}
        missing = []
        for group, target in self.targets.items():
            for slot in range(target):
                if (group, slot) not in filled:
                    history = self.slots.get((group, slot))
                    missing.append((group, slot, history.respawn_at if history else 0.0))
        return missing

    def _ask_for_wake_up(self) -> None:
        when = self.next_deadline()
        if when != self._wake_at:
            self._wake_at = when
            self.emit(WakeAt(when))

    # guards ---------------------------------------------------------------------------

    def graceful_term(self, *_: Any) -> bool:
        """TERM means QUIT (systemd, Docker and Kubernetes stop services with TERM)."""
        return self.config.graceful_term

    # has_terminal is a plain attribute, read by transitions as a guard

    # callbacks: only fire worker triggers, set fields and append effects ------------------

    def stop_all_workers(self, *_: Any) -> None:
        for worker in list(self.workers):
            self.fire(worker, "stop_requested")

    def terminate_all_workers(self, *_: Any) -> None:
        for worker in list(self.workers):
            self.fire(worker, "terminate_requested")

    def replace_workers(self, *_: Any) -> None:
        """A new generation: every current worker is stopped gracefully; settle refills."""
        self.generation += 1
        self.stop_all_workers()

    def take_config_and_replace_workers(self, config: PoolConfig) -> None:
        self.config = config
        self.targets = {g.name: g.workers for g in config.groups}
        self.slots = {key: h for key, h in self.slots.items() if key[0] in self.targets}
        self.replace_workers()

    def log_winch_ignored(self, *_: Any) -> None:
        self.emit(Log("info", "WINCH ignored: the master has a controlling terminal"))

    def log_ignored(self, *_: Any) -> None:
        self.emit(Log("warning", f"request ignored: the master is {self.state}"))

    def log_stray_child(self, pid: int, status: int) -> None:
        self.emit(Log("warning", f"reaped pid={pid} ({describe_status(status)}), "
                                 "which is not a live worker: ignored"))

    def grow_first_group(self, *_: Any) -> None:
        self.scale_group(self.first_group, self.targets[self.first_group] + 1)

    def shrink_first_group(self, *_: Any) -> None:
        self.scale_group(self.first_group, self.targets[self.first_group] - 1)

    def grow_group(self, group: str | None) -> None:
        group = group or self.first_group
        self.scale_group(group, self.targets.get(group, 0) + 1)

    def shrink_group(self, group: str | None) -> None:
        group = group or self.first_group
        self.scale_group(group, self.targets.get(group, 0) - 1)

    def scale_group(self, group: str, n: int) -> None:
        """Set a group's target within 0..max_workers; settle spawns or retires."""
        if group not in self.targets:
            self.emit(Log("warning", f"no group {group!r} to scale (groups: "
                                     f"{', '.join(self.targets)})"))
            return
        bounded = max(0, n if self.config.max_workers is None else min(n, self.config.max_workers))
        if bounded != n:
            self.emit(Log("warning", f"group {group} stays at {bounded} workers "
                                     f"(asked for {n}; bounds 0..{self.config.max_workers})"))
        if bounded != self.targets[group]:
            self.emit(Log("info", f"group {group}: {self.targets[group]} -> {bounded} workers"))
            self.targets[group] = bounded

    @property
    def first_group(self) -> str:
        """TTIN and TTOU resize the first group of the config."""
        return next(iter(self.targets))

    def reopen_logs(self, *_: Any) -> None:
        self.emit(ReopenLogs())
        self._forward(Sig.USR1)

    def forward_to_workers(self, signo: Sig) -> None:
        self._forward(signo)

    def _forward(self, signo: Sig) -> None:
        for worker in list(self.workers):
            self.fire(worker, "signal_forwarded", signo)

    def give_up(self, *_: Any) -> None:
        self.exit_code = 1
        self.emit(Log("error", f"more than {self.config.max_restarts} crashes in "
                               f"{self.config.restart_period:g}s: giving up"))
        self.terminate_all_workers()

    def exit(self, *_: Any) -> None:
        self.emit(Exit(self.exit_code))


def backoff_delay(failures: int, config: PoolConfig) -> float:
    """Delay before refilling a slot after its ``failures``-th crash in a row.

    The first crash is replaced at once (a worker killed by an operator comes straight
    back); then ``restart_backoff``, doubling each time, capped at ``restart_backoff_max``.
    """
    if failures <= 1:
        return 0.0
    doublings = min(failures - 2, 64)  # past the cap anyway; 2 ** 1100 would overflow a float
    return min(config.restart_backoff_max, config.restart_backoff * 2**doublings)


def describe_status(status: int) -> str:
    """``ChildExited.status`` in words: an exit code, or the number of a fatal signal."""
    return f"killed by signal {-status}" if status < 0 else f"exit status {status}"
