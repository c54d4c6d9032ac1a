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

The rules run after every event, so they must not walk the pool: a scoreboard scan of
256 workers hands the core 256 readings at once. They read bookkeeping kept up to date
as workers change (which slot has a live worker, which slots are vacant and when each may
be refilled, which Spawns are unanswered, how many workers are of an older generation,
a heap of deadlines), and ``fire`` is the one place that keeps it, since every change of
a worker goes through a worker trigger. One event then costs the same with 4 workers or
256; ``bookkeeping_errors`` compares it all with a recount, and the tests call it after
every event.

The supervisor is the sans-IO entry point: ``handle(event) -> list[Effect]``.
"""

from __future__ import annotations

import heapq
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import Any, ClassVar

from transitions import Machine, MachineError

from prefork.core import events as ev
from prefork.core.effects import Effect, Exit, Log, ReopenLogs, SetTitle, Spawn, WakeAt
from prefork.core.errors import CoreError
from prefork.core.settings import GroupConfig, PoolConfig
from prefork.core.signals import Sig
from prefork.core.snapshot import Snapshot, WorkerView
from prefork.core.worker_machine import ACTIVE, WORKER_TRANSITIONS, Worker, WorkerState


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
# it has workers to look after: every state but booting and stopped
SUPERVISING = [*UP, *LEAVING]
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
    {"trigger": "usr1_received", "source": SUPERVISING, "dest": None, "after": "reopen_logs"},
    {"trigger": "usr2_received", "source": SUPERVISING, "dest": None,
     "after": "forward_to_workers"},
    {"trigger": "cont_received", "source": SUPERVISING, "dest": None,
     "after": "forward_to_workers"},
    # children
    {"trigger": "chld_received", "source": SUPERVISING, "dest": None},
    {"trigger": "stray_child_exited", "source": SUPERVISING, "dest": None,
     "after": "log_stray_child"},
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
        # Bookkeeping the derived rules read, kept up to date as workers change so that
        # one event costs the same with 4 workers or 256 (``bookkeeping_errors`` checks it
        # against a recount from scratch).
        self._serial = 0  # spawn order: rules act on workers in the order they were spawned
        self._unforked: dict[tuple[str, int], Worker] = {}  # Spawns not answered yet
        self._active: dict[tuple[str, int], Worker] = {}  # slot -> its live worker
        self._vacant: dict[tuple[str, int], float] = {}  # slot below target -> refill time
        self._vacancy_heap: list[tuple[float, int, int, str]] = []  # lazily pruned
        self._deadline_heap: list[tuple[float, int, Worker]] = []  # lazily pruned
        self._maybe_surplus: dict[Worker, None] = {}  # workers a rule 4 check is due for
        self._old_workers = 0  # workers of an older generation than the current one
        self._group_order: dict[str, int] = {}
        self._track_targets()

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

    def snapshot(self) -> Snapshot:
        """A frozen picture of the pool now, for readers outside the core."""
        return Snapshot(
            state=str(self.state),
            targets=tuple(self.targets.items()),
            workers=tuple(
                WorkerView(w.group, w.slot, w.pid, str(w.state), w.performs, w.generation,
                           w.stop_signal is not None)
                for w in self.workers
            ),
            exit_code=self.exit_code,
        )

    def next_deadline(self) -> float | None:
        """The earliest time the core must be woken (``None``: nothing to time)."""
        times = [when for when in (self._earliest_worker_deadline(),) if when is not None]
        if self.state in SPAWNING_STATES:
            refill = self._earliest_refill_after_now()
            if refill is not None:
                times.append(refill)
        return min(times, default=None)

    def bookkeeping_errors(self) -> list[str]:
        """Where the incremental bookkeeping differs from a recount (for the tests)."""
        errors = []
        active = {(w.group, w.slot): w for w in self.workers if w.is_active}
        if len(active) != sum(w.is_active for w in self.workers):
            errors.append("two live workers share a slot")
        if active != self._active:
            errors.append(f"live slots {sorted(self._active)} != {sorted(active)}")
        vacant = {(group, slot) for group, target in self.targets.items()
                  for slot in range(target) if (group, slot) not in active}
        if vacant != set(self._vacant):
            errors.append(f"vacant slots {sorted(self._vacant)} != {sorted(vacant)}")
        for key, when in self._vacant.items():
            history = self.slots.get(key)
            if when != (history.respawn_at if history else 0.0):
                errors.append(f"slot {key} refills at {when}, its history says otherwise")
        unforked = {(w.group, w.slot): w for w in self.workers if w.pid is None}
        if unforked != self._unforked:
            errors.append(f"unforked {sorted(self._unforked)} != {sorted(unforked)}")
        old = sum(w.generation < self.generation for w in self.workers)
        if old != self._old_workers:
            errors.append(f"{self._old_workers} old workers counted, {old} found")
        deadlines = [w.deadline for w in self.workers if w.deadline is not None]
        if min(deadlines, default=None) != self._earliest_worker_deadline():
            errors.append("the deadline heap lost the earliest worker deadline")
        return errors

    # dispatch -------------------------------------------------------------------------

    def _advance_clock(self, event: ev.Event) -> None:
        when = event.now if isinstance(event, ev.Tick) else event.at
        if when is not None:
            self.now = max(self.now, when)

    def _check_spawns_answered(self, event: ev.Event) -> None:
        if isinstance(event, ev.Forked | ev.ForkFailed):
            return
        for group, slot in self._unforked:
            raise CoreError(
                f"master machine: {event!r} arrived before Spawn({group!r}, "
                f"{slot}) was answered with Forked or ForkFailed"
            )

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
        del self._unforked[(worker.group, worker.slot)]
        self._by_pid[event.pid] = worker
        self.fire(worker, "forked", event.pid)

    def _on_fork_failed(self, event: ev.ForkFailed) -> None:
        worker = self._unanswered_spawn(event.group, event.slot, event)
        del self._unforked[(worker.group, worker.slot)]
        self.fire(worker, "fork_failed", event.error)
        self._count_crash(worker)
        self._bury(worker)

    def _on_child_exited(self, event: ev.ChildExited) -> None:
        worker = self._by_pid.get(event.pid)
        if worker is None:
            self.fire(self, "stray_child_exited", event.pid, event.status)
            return
        if event.performs is not None:
            self._take_count(worker, event.performs)
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
        self._after_count(worker)

    def _take_count(self, worker: Worker, performs: int) -> None:
        worker.count_performs(performs)
        self._after_count(worker)

    def _after_count(self, worker: Worker) -> None:
        """A new performs count may end the slot's crash run or reach ``max_performs``."""
        self._end_crash_run_if_healthy(worker)
        if worker.settings.max_performs is not None and worker.is_active:
            self._maybe_surplus[worker] = None

    def _end_crash_run_if_healthy(self, worker: Worker) -> None:
        """A live worker that performed shows its slot works: a later crash starts a new run.

        Only a live one: a worker already told to stop (timed out, or of an older
        generation) may report performs done before the slot's latest failures, and must
        not wipe the back-off those failures earned.
        """
        if worker.performs > 0 and worker.is_active:
            self.slots.pop((worker.group, worker.slot), None)  # its slot is not vacant

    def _on_tick(self, event: ev.Tick) -> None:
        if self.state is M.STOPPED:  # the adapter exits on Exit: time no longer passes here
            raise CoreError("master machine: no row for Tick in state stopped")
        for worker in self._workers_past_deadline():
            was_active = worker.is_active
            self.fire(worker, "deadline_passed")
            if worker.deadline is not None and worker.deadline <= self.now:
                self._push_deadline(worker)  # re-armed at the same time (a zero grace)
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
        deadline = getattr(model, "deadline", None)
        position = len(self._outbox)
        method = getattr(model, trigger, None)
        if method is None:  # a trigger of the other machine
            raise CoreError(self._no_row(model, trigger, before))
        try:
            method(*args)
        except MachineError:
            raise CoreError(self._no_row(model, trigger, before)) from None
        if isinstance(model, Worker):
            self._note_worker_change(model, before, deadline)
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
        worker = self._unforked.get((group, slot))
        if worker is None:
            raise CoreError(f"master machine: {event!r} answers no Spawn")
        return worker

    def _spawn(self, group: str, slot: int) -> None:
        worker = Worker(self, self.config.group(group), slot, self.generation)
        self._serial += 1
        worker.serial = self._serial
        self._worker_machine.add_model(worker)
        self.workers.append(worker)
        key = (group, slot)
        self._unforked[key] = worker
        self._active[key] = worker
        self._vacant.pop(key, None)
        self.emit(Spawn(group, slot))

    def _bury(self, worker: Worker) -> None:
        """Forget a dead worker: it leaves the machine, the pid index and the list."""
        self._worker_machine.remove_model(worker)
        self.workers.remove(worker)
        if worker.pid is not None:
            del self._by_pid[worker.pid]
        if worker.generation < self.generation:
            self._old_workers -= 1
        self._maybe_surplus.pop(worker, None)

    def _note_worker_change(self, worker: Worker, before: WorkerState,
                            deadline: float | None) -> None:
        """Keep the bookkeeping in step after a worker trigger (the only place workers
        change): a worker that stops being live leaves its slot vacant, a new deadline
        joins the heap."""
        if before in ACTIVE and not worker.is_active:
            key = (worker.group, worker.slot)
            if self._active.get(key) is worker:
                del self._active[key]
            if worker.slot < self.targets.get(worker.group, 0):
                self._set_vacancy(key)
        if worker.deadline is not None and worker.deadline != deadline:
            self._push_deadline(worker)

    def _push_deadline(self, worker: Worker) -> None:
        heap = self._deadline_heap
        assert worker.deadline is not None
        heapq.heappush(heap, (worker.deadline, worker.serial, worker))
        if len(heap) > 4 * len(self.workers) + 64:  # mostly stale: rebuild it
            self._deadline_heap = [(w.deadline, w.serial, w) for w in self.workers
                                   if w.deadline is not None]
            heapq.heapify(self._deadline_heap)

    @staticmethod
    def _deadline_is_current(entry: tuple[float, int, Worker]) -> bool:
        when, _, worker = entry
        return worker.deadline == when and worker.state is not WorkerState.DEAD

    def _earliest_worker_deadline(self) -> float | None:
        heap = self._deadline_heap
        while heap and not self._deadline_is_current(heap[0]):
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def _workers_past_deadline(self) -> list[Worker]:
        """Workers whose deadline has come, in spawn order (each once per Tick)."""
        heap = self._deadline_heap
        due: dict[Worker, None] = {}
        while heap and heap[0][0] <= self.now:
            entry = heapq.heappop(heap)
            if self._deadline_is_current(entry):
                due[entry[2]] = None
        return sorted(due, key=lambda worker: worker.serial)

    def _set_vacancy(self, key: tuple[str, int]) -> None:
        """A slot below its target has no live worker: it is refilled at ``respawn_at``."""
        history = self.slots.get(key)
        when = history.respawn_at if history else 0.0
        self._vacant[key] = when
        group, slot = key
        heapq.heappush(self._vacancy_heap, (when, self._group_order[group], slot, group))

    def _track_targets(self) -> None:
        """The targets changed (boot, scale, reload): recount vacancies and surplus."""
        self._group_order = {group: index for index, group in enumerate(self.targets)}
        self._vacant = {}
        self._vacancy_heap = []
        for group, target in self.targets.items():
            for slot in range(target):
                if (group, slot) not in self._active:
                    self._set_vacancy((group, slot))
        for (group, slot), worker in self._active.items():
            if slot >= self.targets.get(group, 0):
                self._maybe_surplus[worker] = None

    def _earliest_refill_after_now(self) -> float | None:
        """The first back-off to end: when a vacant slot may be spawned again."""
        heap = self._vacancy_heap
        while heap and self._vacant.get((heap[0][3], heap[0][2])) != heap[0][0]:
            heapq.heappop(heap)  # filled, or refilled at another time since
        if not heap:
            return None
        if heap[0][0] > self.now:
            return heap[0][0]
        # some slot is due but was not spawned (too many crashes): look past it
        return min((when for when in self._vacant.values() if when > self.now), default=None)

    def _due_vacancies(self) -> list[tuple[str, int]]:
        """Vacant slots whose back-off is over, in group then slot order."""
        heap = self._vacancy_heap
        due: dict[tuple[str, int], None] = {}
        while heap and heap[0][0] <= self.now:
            when, _, slot, group = heapq.heappop(heap)
            if self._vacant.get((group, slot)) == when:
                due[(group, slot)] = None
        return sorted(due, key=lambda key: (self._group_order[key[0]], key[1]))

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
        if uptime >= worker.settings.restart_backoff_max:  # it ran long enough to count as well
            history.failures = 0
        history.failures += 1
        delay = backoff_delay(history.failures, worker.settings)
        history.respawn_at = self.now + delay
        if (worker.group, worker.slot) in self._vacant:
            self._set_vacancy((worker.group, worker.slot))
        if delay > 0:
            self.emit(Log("warning", f"slot {worker.group}.{worker.slot} failed "
                                     f"{history.failures} times in a row; respawn in {delay:g}s"))
        self._forget_crashes_before(self.now - self.config.restart_period)
        self.crash_times.append(self.now)

    def _forget_crashes_before(self, since: float) -> None:
        """Drop crashes at or before ``since`` (the times are in order: the clock only
        moves forward), so that a long run with no crash limit keeps no endless list."""
        del self.crash_times[:bisect_right(self.crash_times, since)]

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
        if self.state is M.RELOADING and not self._old_workers:
            self.fire(self, "reload_finished")
            return True
        return False

    def _give_up_on_crash_loop(self) -> bool:
        if self.state in SPAWNING_STATES and self._too_many_crashes() and not self._unforked:
            self.fire(self, "restarts_exhausted")
            return True
        return False

    def _too_many_crashes(self) -> bool:
        """More than ``max_restarts`` crashes within the last ``restart_period`` seconds."""
        limit = self.config.max_restarts
        if limit is None:
            return False
        self._forget_crashes_before(self.now - self.config.restart_period)
        return len(self.crash_times) > limit

    def _retire_surplus(self) -> bool:
        if self.state not in UP:
            return False
        if self.state is M.PAUSED:
            candidates = list(self._active.values())
        else:  # only a reading, a count or a smaller target makes a worker surplus
            candidates = list(self._maybe_surplus)
            self._maybe_surplus.clear()
        surplus = [w for w in candidates if w.is_active and self._is_surplus(w)]
        if not surplus:
            return False
        first, *others = sorted(surplus, key=lambda worker: worker.serial)
        self._maybe_surplus.update(dict.fromkeys(others))
        self.fire(first, "stop_requested")
        return True

    def _is_surplus(self, worker: Worker) -> bool:
        # a reload stops every worker, so an active worker's group is always a target
        if self.state is M.PAUSED or worker.slot >= self.targets[worker.group]:
            return True
        limit = worker.settings.max_performs
        return limit is not None and worker.performs >= limit

    def _fill_missing_slots(self) -> bool:
        if self.state not in SPAWNING_STATES or self._too_many_crashes():
            return False
        due = self._due_vacancies()
        for group, slot in due:
            self._spawn(group, slot)
        return bool(due)

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
        self._old_workers = len(self.workers)
        self.stop_all_workers()

    def take_config_and_replace_workers(self, config: PoolConfig) -> None:
        """A new config: workers of the groups it keeps take their group's new options
        (a longer ``graceful_timeout`` applies to the stop that replaces them); workers of
        a group it drops keep the options they had."""
        self.config = config
        kept = set(config.group_names)
        for worker in self.workers:
            if worker.group in kept:
                worker.settings = config.group(worker.group)
        self.targets = {g.name: g.workers for g in config.groups}
        self.slots = {key: h for key, h in self.slots.items() if key[0] in self.targets}
        self._track_targets()
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
        most = self.config.group(group).max_workers
        bounded = max(0, n if most is None else min(n, most))
        if bounded != n:
            self.emit(Log("warning", f"group {group} stays at {bounded} workers "
                                     f"(asked for {n}; bounds 0..{most})"))
        if bounded != self.targets[group]:
            self.emit(Log("info", f"group {group}: {self.targets[group]} -> {bounded} workers"))
            self.targets[group] = bounded
            self._track_targets()

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


def backoff_delay(failures: int, config: GroupConfig) -> float:
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
