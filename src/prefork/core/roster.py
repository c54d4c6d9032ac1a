"""The roster: every worker the master knows, and the indexes the derived rules read.

The derived rules run after every event, so they must not walk the pool: a scoreboard
scan of 256 workers hands the core 256 readings at once. They read indexes kept up to
date as workers change: the worker of each pid, the live worker of each slot and how
many each group has, the Spawns not answered yet, the vacant slots with the time each
may be refilled and the workers' deadlines (two timetables, ``prefork.core.schedules``),
the number of workers of an older generation, and the workers a retirement check or a
"replaced" check is due for. One event then costs the same with 4 workers or 1024.

Indexes kept by hand drift when one caller forgets one of them, so there is one door:
``change(worker, trigger, ...)`` fires a worker trigger and brings every index in step
with what the row did (a pid recorded, a deadline moved, a slot left, a death), and
``enlist`` is the only way in. Nothing else changes a worker. ``recount()`` compares all
of it with a count from scratch; the tests call it after every event.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from transitions import MachineError

from prefork.core.context import MachineContext
from prefork.core.effects import Log, RunHook, Spawn
from prefork.core.errors import CoreError
from prefork.core.recycling import replaced
from prefork.core.roster_check import recount
from prefork.core.schedules import Deadlines, Vacancies
from prefork.core.settings import GroupConfig, PoolConfig
from prefork.core.worker_lines import transition_line
from prefork.core.worker_machine import (
    ACTIVE,
    SAMPLED,
    WORKING,
    Worker,
    WorkerState,
)
from prefork.core.worker_models import new_worker_machine

Slot = tuple[str, int]


class Roster:
    """The workers, their indexes, each group's target and the current generation.

    ``refill_time(group, slot)`` says when a vacant slot may be spawned again (the
    restart policy's back-off); ``vacancies`` asks it whenever a slot falls vacant, and
    ``vacancies.reschedule`` tells it that a vacant slot's time changed. ``deadlines``
    holds the workers' deadlines.
    """

    def __init__(self, config: PoolConfig, context: MachineContext,
                 refill_time: Callable[[str, int], float]) -> None:
        self.context = context
        self.targets: dict[str, int] = {g.name: g.workers for g in config.groups}
        self.generation = 0
        self._machine = new_worker_machine()
        self._workers: dict[Worker, None] = {}  # in spawn order
        self._serial = 0
        self._by_pid: dict[int, Worker] = {}
        self._unforked: dict[Slot, Worker] = {}  # Spawns not answered yet
        self._active: dict[Slot, Worker] = {}  # slot -> its live worker
        self._live_in: dict[str, int] = {}  # group -> how many live workers it has
        self.vacancies = Vacancies(refill_time)  # slot below target -> refill time
        self.deadlines = Deadlines()
        self._maybe_surplus: dict[Worker, None] = {}  # workers a retirement check is due for
        # recycled workers waiting for a successor, each with when it began to retire
        self._retiring: dict[Worker, int] = {}
        self._retirements = 0
        self._maybe_replaced: dict[Worker, None] = {}  # retiring: a "replaced" check is due
        self._working: dict[Slot, dict[Worker, None]] = {}  # slot -> set up, not stopping
        self.old_workers = 0  # workers of an older generation than the current one
        # (group, idle or performing) -> how many of its live workers were last read so
        self._sampled: dict[tuple[str, WorkerState], int] = {}
        self._track_targets()

    # reading ------------------------------------------------------------------------

    @property
    def workers(self) -> list[Worker]:
        """Every worker not yet reaped, in spawn order."""
        return list(self._workers)

    def __len__(self) -> int:
        return len(self._workers)

    def by_pid(self, pid: int) -> Worker | None:
        return self._by_pid.get(pid)

    def unanswered(self, group: str, slot: int) -> Worker | None:
        """The worker whose ``Spawn(group, slot)`` awaits ``Forked`` or ``ForkFailed``."""
        return self._unforked.get((group, slot))

    def first_unanswered(self) -> Slot | None:
        return next(iter(self._unforked), None)

    def busy(self, group: str) -> int:
        """How many of the group's workers the latest readings say are performing (what
        spare-worker scaling reads after every event, so it is counted, not walked)."""
        return self._sampled.get((group, WorkerState.PERFORMING), 0)

    def idle(self, group: str) -> int:
        """How many of the group's live workers the latest readings say are idle."""
        return self._sampled.get((group, WorkerState.IDLE), 0)

    def active(self, group: str | None = None) -> list[Worker]:
        """Workers that count towards a target: spawning, idle or performing."""
        return [w for w in self._workers if w.is_active and group in (None, w.group)]

    def active_count(self, group: str | None = None) -> int:
        """``len(active(group))``, from the count the door keeps: no walk of the pool."""
        if group is None:
            return len(self._active)
        return self._live_in.get(group, 0)

    # the door -----------------------------------------------------------------------

    def enlist(self, settings: GroupConfig, slot: int, held: bool = False) -> Worker:
        """A new worker for ``slot``: run the ``before_fork`` hook, then ask for the fork
        (``held``: to start on hold)."""
        worker = Worker(settings, slot, self.generation, self.context)
        self._serial += 1
        worker.serial = self._serial
        self._machine.add_model(worker)
        self._workers[worker] = None
        key = (worker.group, slot)
        self._unforked[key] = worker
        if key not in self._active:
            self._live_in[worker.group] = self._live_in.get(worker.group, 0) + 1
        self._active[key] = worker
        self.vacancies.fill(key)
        self.context.emit(RunHook("before_fork", key))
        self.context.emit(Spawn(worker.group, slot, held))
        return worker

    def change(self, worker: Worker, trigger: str, *args: Any) -> None:
        """Fire ``trigger`` on ``worker`` and keep every index in step; log a state change.

        A pair the table has no row for raises ``CoreError`` naming the machine, the
        worker, its state and the trigger; the worker is left as it was.
        """
        before, deadline, pid = worker.state, worker.deadline, worker.pid
        position = self.context.mark()
        method = getattr(worker, trigger, None)
        if method is None:  # a trigger of the other machine
            raise CoreError(self._no_row(worker, trigger, before))
        try:
            method(*args)
        except MachineError:
            raise CoreError(self._no_row(worker, trigger, before)) from None
        self._reindex(worker, before, deadline, pid)
        if pid is None and worker.pid is not None:
            self.context.emit(Log("info", f"worker {worker.label} spawned",
                                  worker.fields("spawned")))
        if worker.state is not before:
            self.context.insert(position, [transition_line(worker, before, trigger,
                                                           self.generation)])

    @staticmethod
    def _no_row(worker: Worker, trigger: str, state: WorkerState) -> str:
        return f"worker machine: no row for {trigger} in state {state} ({worker.label})"

    def _reindex(self, worker: Worker, before: WorkerState, deadline: float | None,
                 pid: int | None) -> None:
        key = (worker.group, worker.slot)
        if worker.state is not before:
            self._count_sampled(worker.group, before, -1)
            self._count_sampled(worker.group, worker.state, +1)
        if pid is None and worker.pid is not None:
            del self._unforked[key]
            self._by_pid[worker.pid] = worker
        if before in ACTIVE and not worker.is_active:
            if self._active.get(key) is worker:
                del self._active[key]
                self._live_in[worker.group] -= 1
            if worker.slot < self.targets.get(worker.group, 0):
                self.vacancies.open(key)
        if worker.deadline is not None and (worker.deadline != deadline
                                            or worker.deadline <= self.context.now):
            self.deadlines.push(worker, self._workers, len(self._workers))
        if worker.state is WorkerState.RETIRING:
            if worker not in self._retiring:
                self._retirements += 1
                self._retiring[worker] = self._retirements
                self._maybe_replaced[worker] = None
        elif worker in self._retiring:
            del self._retiring[worker]
            self._maybe_replaced.pop(worker, None)
        if worker.state in WORKING:
            working = self._working.setdefault(key, {})
            if worker not in working:
                working[worker] = None
                # a newer worker of the slot works: its retiring ones may be replaced now
                self._maybe_replaced.update(
                    (other, None) for other in working if other in self._retiring)
        elif worker in self._working.get(key, ()):
            del self._working[key][worker]
            if not self._working[key]:
                del self._working[key]
        if worker.state is WorkerState.DEAD:
            self._bury(worker, key)

    def _count_sampled(self, group: str, state: WorkerState, change: int) -> None:
        if state in SAMPLED:
            key = (group, state)
            self._sampled[key] = self._sampled.get(key, 0) + change

    def _bury(self, worker: Worker, key: Slot) -> None:
        """Forget a dead worker: it leaves the machine and every index."""
        self._machine.remove_model(worker)
        del self._workers[worker]
        if worker.pid is None:
            del self._unforked[key]
        else:
            del self._by_pid[worker.pid]
        if worker.generation < self.generation:
            self.old_workers -= 1
        self._maybe_surplus.pop(worker, None)

    def adopt(self, config: PoolConfig) -> None:
        """A reload: workers of the groups it keeps take their group's new options (a
        longer ``graceful_timeout`` applies to the stop that replaces them); workers of a
        group it drops keep the options they had."""
        kept = set(config.group_names)
        for worker in self._workers:
            if worker.group in kept:
                worker.settings = config.group(worker.group)

    # targets and generations ------------------------------------------------------------

    def set_targets(self, targets: dict[str, int]) -> None:
        self.targets = dict(targets)
        self._track_targets()

    def set_target(self, group: str, n: int) -> None:
        self.targets[group] = n
        self._track_targets()

    def new_generation(self) -> None:
        """Every worker now belongs to an older generation (a reload replaces them)."""
        self.generation += 1
        self.old_workers = len(self._workers)

    def _track_targets(self) -> None:
        """The targets changed (boot, scale, reload): recount vacancies and surplus."""
        self.vacancies.reset(self.targets)
        for group, target in self.targets.items():
            for slot in range(target):
                if (group, slot) not in self._active:
                    self.vacancies.open((group, slot))
        for (group, slot), worker in self._active.items():
            if slot >= self.targets.get(group, 0):
                self._maybe_surplus[worker] = None
        self._maybe_replaced.update(dict.fromkeys(self._retiring))  # a slot may be gone

    # retirement ---------------------------------------------------------------------

    def next_surplus(self, paused: bool) -> Worker | None:
        """The first live worker (in spawn order) to retire: beyond its group's target,
        or any worker at all while ``paused``."""
        if paused:
            candidates = list(self._active.values())
        else:  # only a reading, a count or a smaller target makes a worker surplus
            candidates = list(self._maybe_surplus)
            self._maybe_surplus.clear()
        surplus = [w for w in candidates if w.is_active and (
            paused or w.slot >= self.targets[w.group])]
        if not surplus:
            return None
        first, *others = sorted(surplus, key=lambda worker: worker.serial)
        self._maybe_surplus.update(dict.fromkeys(others))
        return first

    def next_replaced(self) -> Worker | None:
        """The first retiring worker (in the order they began to retire) that a newer
        worker of its slot works beside, or whose slot is gone (``recycling.replaced``):
        it may now be told to stop.

        Only the workers a check is due for are looked at: those that began to retire,
        or whose slot has a newly working worker, since the last look, or all of them
        when a target changed. Nothing else can replace a retiring worker, and a pool
        that recycles workers with long performs may hold hundreds of retiring ones."""
        for worker in sorted(self._maybe_replaced, key=self._retiring.__getitem__):
            key = (worker.group, worker.slot)
            if replaced(worker, self._working.get(key, ()), self.targets.get(worker.group, 0)):
                return worker
            del self._maybe_replaced[worker]
        return None

    # the check ----------------------------------------------------------------------

    def recount(self) -> list[str]:
        """Where the indexes differ from a count from scratch (for the tests)."""
        return recount(self)
