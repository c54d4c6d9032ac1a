"""The events that concern one worker: its fork answered, its readings, its deadlines,
its reap; and the counting of a failure when a row gives the worker its outcome.

``Supervisor`` routes every event; these are the routes that end in a worker's machine
(``Tick`` fires each worker whose deadline has come). They are a room of their own so
that the supervisor keeps to routing the master's requests and settling the rules. The
methods run on the supervisor (this class is one of its bases) and use its roster,
restart policy, master model and ``fire``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from prefork.core import events as ev
from prefork.core.errors import CoreError
from prefork.core.master_machine import LEAVING, MasterState
from prefork.core.outcomes import Outcome
from prefork.core.restarts import FAILURES
from prefork.core.worker_machine import Worker, WorkerState

if TYPE_CHECKING:
    from prefork.core.context import MachineContext
    from prefork.core.master_machine import MasterModel
    from prefork.core.restarts import RestartPolicy
    from prefork.core.roster import Roster
    from prefork.core.tally import Tally


class WorkerEvents:
    """The supervisor's routes for the events of one worker."""

    roster: Roster
    restarts: RestartPolicy
    tally: Tally
    master: MasterModel
    context: MachineContext
    state: MasterState
    now: float
    fire: Any  # the supervisor's: fire a trigger on a model, log a state change

    def on_forked(self, event: ev.Forked) -> None:
        worker = self.answered_spawn(event.group, event.slot, event)
        if self.roster.by_pid(event.pid) is not None:
            raise CoreError(f"master machine: {event!r} reuses the pid of a live worker")
        self.fire(worker, "forked", event.pid)
        self.tally.forked(event.group, event.slot)

    def on_fork_failed(self, event: ev.ForkFailed) -> None:
        worker = self.answered_spawn(event.group, event.slot, event)
        self.fire_and_count(worker, "fork_failed", event.error)
        self.tally.fork_failed(event.group)

    def answered_spawn(self, group: str, slot: int, event: ev.Event) -> Worker:
        worker = self.roster.unanswered(group, slot)
        if worker is None:
            raise CoreError(f"master machine: {event!r} answers no Spawn")
        return worker

    def on_child_exited(self, event: ev.ChildExited) -> None:
        worker = self.roster.by_pid(event.pid)
        if worker is None:
            self.fire(self.master, "stray_child_exited", event.pid, event.status)
            return
        if event.performing is not None:  # the final reading: no sample is fresher
            worker.busy = event.performing
        if worker.is_active and worker.count_at_exit(event.performs) > 0:
            self.restarts.worked(worker.group, worker.slot)  # the slot works
        self.fire_and_count(worker, "exited", event.status, event.performs)
        self.tally.reaped(worker)
        if self.state in LEAVING:
            self.master.report.record(worker)

    def on_observed(self, event: ev.Observed) -> None:
        worker = self.roster.by_pid(event.pid)
        if worker is None:
            raise CoreError(f"master machine: {event!r} names no live worker")
        trigger = f"reported_{WorkerState(event.state).value}"
        self.fire(worker, trigger, event.heartbeat_at, event.performs)
        if event.recycle is not None:  # its slot asks until it is gone: repeats are rows
            self.fire(worker, "recycle_requested", event.recycle, event.memory_mib)
        rise = event.failures - worker.failures
        if rise > 0:  # counted once: the worker keeps the highest count seen
            self.fire(worker, "performs_failed", event.failures)
            self.tally.failed_performs(worker.group, rise)
            self.restarts.failed(Outcome.PERFORM_FAILED, worker.settings, worker.slot,
                                 self.now, None, count=rise)
        # Only a live worker ends its slot's run of failures: one already told to stop
        # (timed out, or of an older generation) may report performs done before the
        # slot's latest failures, and must not wipe the back-off they earned.
        if worker.performs > 0 and worker.is_active:
            self.restarts.worked(worker.group, worker.slot)

    def on_memory_sampled(self, event: ev.MemorySampled) -> None:
        worker = self.roster.by_pid(event.pid)
        if worker is None:
            raise CoreError(f"master machine: {event!r} names no live worker")
        self.fire(worker, "memory_sampled", event.mib)

    def on_tick(self, event: ev.Tick) -> None:
        if self.state is MasterState.STOPPED:  # the adapter exits on Exit: time stops here
            raise CoreError("master machine: no row for Tick in state stopped")
        for worker in self.roster.deadlines.past(self.now):
            self.fire_and_count(worker, "deadline_passed")

    def fire_and_count(self, worker: Worker, trigger: str, *args: Any) -> None:
        """Fire a trigger that may give the worker its outcome; a new outcome that is a
        failure is counted, once: a timed-out worker's verdict came with its deadline
        (its replacement waits from then on), and its reap changes nothing more."""
        verdict = worker.outcome
        self.fire(worker, trigger, *args)
        if worker.outcome is verdict or worker.outcome not in FAILURES:
            return
        for line in self.restarts.failed(worker.outcome, worker.settings, worker.slot,
                                         self.now, worker.time_up(self.now)):
            self.context.emit(line)
        self.roster.vacancies.reschedule((worker.group, worker.slot))

