"""The worker process's own machine: what one worker is doing, as it knows it.

Theory of operation
-------------------

``prefork.core.worker_machine`` is the master's view of a worker, pieced together from
scoreboard readings. This is the worker's view of itself, and it drives the process
from fork to exit (``prefork.child.runtime`` carries out what it asks).

A worker sets up once (``setting_up``), then alternates between ``idle`` and a *batch*
of performs: ``performing`` with the simple strategy, ``waiting`` with the forking one
(the worker then spends the batch in ``waitpid`` on one perform child after another).
A graceful stop (QUIT, the master gone, or a hard budget of performs spent) leads through
``stopping``, where ``teardown()`` runs, to ``exited``; a failed setup, perform or
teardown leads straight to ``exited`` with status 1, and a quick stop (``shut_down``:
TERM or INT raised ``prefork.Shutdown`` where the worker stood) with status 0, from
anywhere. USR2 parks an idle worker in ``holding`` until CONT.

Why batches and not performs: a trigger costs about 5 µs and, in a forked process,
copies the pages of every object it touches, while the simple strategy's loop costs
0.036 µs per perform and the forking one is measured against a bare fork loop. So the
machine is fired at lifecycle moments only: when a batch starts, and when it ends
because a signal is pending or its budget of performs is spent (a recycling limit, or the
next check of its memory). Inside a batch
the loops write the scoreboard, one store per fact, and read one flag; the scoreboard is
the per-perform record, this machine the per-lifecycle one. The rows fired inside a
batch are on the failure path only: ``perform_child_failed``, and
``perform_child_recovered`` for the first perform that succeeds after failures.

Why failed perform children are counted here: only the worker knows of them. Each one
adds to the slot's ``failures`` (``CountFailure``), which the master counts toward its
restart intensity, and makes the worker wait the restart policy's back-off
(``prefork.core.restarts.backoff_delay`` of the failures in a row) before its next fork,
as a crashing worker's slot would (``BackOff``). A child that raised logged its own
traceback and says so with its status (``EXIT_PERFORM_RAISED``); the worker logs only
the ones that died without a word, so each failure is logged once.

Why recycling does not stop the worker: at its ``max_performs`` (with its own jitter) or
over ``max_memory`` it fires ``recycle_due`` between batches, which writes the reason into
its slot and wakes the master; the master forks a replacement and tells this worker to stop
(QUIT) only once that one is ready, so the pool's capacity never dips
(``prefork.core.recycling``). The worker asks once (the runtime's ``SelfCheck`` says when).

Why requests are triggers and not signals: signal handlers run at any bytecode, so they
only set flags (``prefork.job.Flags``) and the runtime *attends* to them between
performs, firing one trigger per request it finds: ``master_lost``,
``reopen_requested``, then ``stop_requested`` or ``hold_requested`` (or, while holding,
``resume_requested``). A stop wins over a hold, and a stop while holding needs no CONT.
TERM and INT are not attended: their handlers raise ``prefork.Shutdown`` at once (see
``prefork.child.runtime``), and the runtime, catching it, fires ``shut_down``.

Why ``master_lost`` stays where it is: a worker learns of its master's death in three
ways (the parent-death signal, a ``getppid()`` check before setup, the lifeline pipe's
EOF while holding), possibly twice. The row logs once (``master_known_gone`` guards the
second) and raises the stop flag, so that the performs' ``worker.stopping`` turns True
at once and the next attend fires ``stop_requested``; during setup, that is right after
setup. It also starts the orphan's deadline (``StartDeadline``): a graceful stop, but
bounded by ``graceful_timeout``. The parent-death signal's handler starts it at once,
even inside a batch; the row starts it where no handler ran, and twice is once.

The table is data; the ``WorkerProcess`` callbacks only append effects to its outbox,
which ``fire`` hands to the runtime. Nothing here does I/O, so the tests drive the
machine with no process at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple

from transitions import Machine, MachineError

from prefork.core.errors import CoreError
from prefork.core.restarts import backoff_delay

EXIT_OK = 0
EXIT_FAILED = 1
# a perform child's status when its perform raised and it logged the traceback itself
EXIT_PERFORM_RAISED = 70


class BackoffSettings(NamedTuple):
    """The group's back-off options, as ``backoff_delay`` reads them (the defaults)."""

    restart_backoff: float = 0.1
    restart_backoff_max: float = 30.0


DEFAULT_BACKOFF = BackoffSettings()


class ProcessState(StrEnum):
    """The states of the worker process's machine (the names used in specs/process.md)."""

    SETTING_UP = "setting_up"
    IDLE = "idle"
    PERFORMING = "performing"
    WAITING = "waiting"
    HOLDING = "holding"
    STOPPING = "stopping"
    EXITED = "exited"


# effects: what the runtime must do, as plain frozen data ----------------------------------


@dataclass(frozen=True)
class ProcessEffect:
    """Base of everything the worker process's machine asks its runtime to do."""


@dataclass(frozen=True)
class MarkIdle(ProcessEffect):
    """Write ``idle`` into the worker's scoreboard slot."""


@dataclass(frozen=True)
class NotifyMaster(ProcessEffect):
    """Its slot's index on the notify pipe: the only time a worker wakes its master."""


@dataclass(frozen=True)
class AskForReplacement(ProcessEffect):
    """Write into the scoreboard slot that the worker asks to be recycled (``reason``:
    max_performs or max_memory, with its figure of its memory)."""

    reason: str
    memory_mib: float | None = None


@dataclass(frozen=True)
class ReopenLogFiles(ProcessEffect):
    """Reopen the worker's log files (after logrotate moved them)."""


@dataclass(frozen=True)
class SetStopping(ProcessEffect):
    """Raise the stop flag: ``worker.stopping`` turns True, and the loop stops next."""


@dataclass(frozen=True)
class StartDeadline(ProcessEffect):
    """The master is gone: stop within ``graceful_timeout``, then KILL the process group."""


@dataclass(frozen=True)
class CountFailure(ProcessEffect):
    """Add one to the slot's ``failures``: a failed perform, for the master to count."""


@dataclass(frozen=True)
class BackOff(ProcessEffect):
    """Wait ``seconds`` before forking the next perform (a signal ends the wait early)."""

    seconds: float


@dataclass(frozen=True)
class LogLine(ProcessEffect):
    """Write one log line at ``level`` (debug, info, warning, error)."""

    level: str
    message: str


@dataclass(frozen=True)
class LogFailure(ProcessEffect):
    """Log ``message`` at error level with the traceback of the exception being handled."""

    message: str


@dataclass(frozen=True)
class ExitWith(ProcessEffect):
    """The worker is done: its process exits with ``code`` (after the before_exit hook)."""

    code: int


# the table ------------------------------------------------------------------------------

S = ProcessState
ATTENDING = [S.IDLE, S.HOLDING]  # where requests are attended: between performs
KNOWS_ITS_MASTER = [S.SETTING_UP, *ATTENDING]
IN_A_BATCH = [S.PERFORMING, S.WAITING]
ALIVE = [S.SETTING_UP, *ATTENDING, *IN_A_BATCH, S.STOPPING]  # all but exited

# Rows grouped by the moment of the worker's life they belong to, as specs/process.md.
PROCESS_TRANSITIONS: list[dict[str, Any]] = [
    # setup (the after_fork hook, then job.setup())
    {"trigger": "setup_finished", "source": S.SETTING_UP, "dest": S.IDLE,
     "after": "announce_ready"},
    {"trigger": "setup_failed", "source": S.SETTING_UP, "dest": S.EXITED,
     "after": "log_setup_failure"},
    # requests attended between performs (and the master's death, also before setup)
    {"trigger": "master_lost", "source": KNOWS_ITS_MASTER, "dest": None,
     "unless": "master_known_gone", "after": "note_master_gone"},
    {"trigger": "master_lost", "source": KNOWS_ITS_MASTER, "dest": None,
     "conditions": "master_known_gone"},
    {"trigger": "reopen_requested", "source": ATTENDING, "dest": None,
     "after": "reopen_log_files"},
    {"trigger": "hold_requested", "source": S.IDLE, "dest": S.HOLDING,
     "after": "start_holding"},
    {"trigger": "resume_requested", "source": S.HOLDING, "dest": S.IDLE,
     "after": "log_resume"},
    {"trigger": "stop_requested", "source": ATTENDING, "dest": S.STOPPING,
     "after": "mark_idle"},
    {"trigger": "limit_reached", "source": S.IDLE, "dest": S.STOPPING, "after": "mark_idle"},
    {"trigger": "recycle_due", "source": S.IDLE, "dest": None, "after": "ask_for_replacement"},
    # batches of performs
    {"trigger": "batch_started", "source": S.IDLE, "dest": S.PERFORMING,
     "unless": "forks_performs"},
    {"trigger": "batch_started", "source": S.IDLE, "dest": S.WAITING,
     "conditions": "forks_performs"},
    {"trigger": "batch_ended", "source": IN_A_BATCH, "dest": S.IDLE},
    {"trigger": "perform_child_failed", "source": S.WAITING, "dest": None,
     "conditions": "logged_by_child", "after": "count_perform_child_failure"},
    {"trigger": "perform_child_failed", "source": S.WAITING, "dest": None,
     "unless": "logged_by_child", "after": "log_perform_child_failure"},
    {"trigger": "perform_child_recovered", "source": S.WAITING, "dest": None,
     "after": "end_failure_run"},
    {"trigger": "perform_failed", "source": [*ATTENDING, *IN_A_BATCH], "dest": S.EXITED,
     "after": "log_perform_failure"},
    # quick stops: Shutdown reached the runtime, wherever the worker stood
    {"trigger": "shut_down", "source": ALIVE, "dest": S.EXITED, "after": "exit_quickly"},
    # teardown
    {"trigger": "teardown_finished", "source": S.STOPPING, "dest": S.EXITED,
     "after": "exit_cleanly"},
    {"trigger": "teardown_failed", "source": S.STOPPING, "dest": S.EXITED,
     "after": "log_teardown_failure"},
]

PROCESS_TRIGGERS: tuple[str, ...] = tuple(
    dict.fromkeys(row["trigger"] for row in PROCESS_TRANSITIONS)
)


class ProcessMachineError(CoreError):
    """A trigger the worker process's table has no row for, in the state it came in.

    The message names the machine, the worker, the state and the trigger; the state is
    left as it was. It is a bug in the runtime, so it is never caught on purpose.
    """


def new_process_machine() -> Machine:
    """The one machine every ``WorkerProcess`` of this interpreter is a model of."""
    return Machine(
        model=None, states=ProcessState, transitions=PROCESS_TRANSITIONS,
        initial=ProcessState.SETTING_UP, auto_transitions=False,
        ignore_invalid_triggers=False,
    )


class WorkerProcess:
    """One worker process, as it knows itself: a model of the process machine.

    ``label`` names the worker in log lines, ``master_pid`` is the master it watches,
    ``forking`` says which strategy its batches use, ``backoff`` how long failed perform
    children make it wait. ``fire`` is the one way in: it fires a trigger and returns the
    effects the row asked for.
    """

    state: ProcessState

    def __init__(self, label: str = "worker", master_pid: int = 0,
                 forking: bool = False, backoff: BackoffSettings = DEFAULT_BACKOFF) -> None:
        self.begin(label, master_pid, forking, backoff)

    def begin(self, label: str, master_pid: int, forking: bool,
              backoff: BackoffSettings = DEFAULT_BACKOFF) -> None:
        """Forget everything but what a new worker is told (its state is the machine's)."""
        self.label = label
        self.master_pid = master_pid
        self.forking = forking
        self.backoff = backoff
        self.outbox: list[ProcessEffect] = []
        self._master_gone = False
        self.failures_in_a_row = 0

    def __repr__(self) -> str:
        return f"<WorkerProcess {self.label} {self.state}>"

    def fire(self, trigger: str, *args: Any) -> list[ProcessEffect]:
        """Fire ``trigger``; the effects of its row, in order, or ``ProcessMachineError``."""
        before = self.state
        method = getattr(self, trigger, None) if trigger in PROCESS_TRIGGERS else None
        try:
            if method is None or not method(*args):
                raise MachineError(trigger)
        except MachineError:
            self.outbox.clear()
            raise ProcessMachineError(
                f"worker process machine: no row for {trigger} in state {before} "
                f"({self.label})"
            ) from None
        effects, self.outbox = self.outbox, []
        return effects

    # guards -------------------------------------------------------------------------

    def forks_performs(self, *_: Any) -> bool:
        """The forking strategy: each perform runs in a child the worker waits on."""
        return self.forking

    def master_known_gone(self, *_: Any) -> bool:
        """The master's death was noted already (it can be noticed twice)."""
        return self._master_gone

    def logged_by_child(self, pid: int = 0, status: int = 0, *_: Any) -> bool:
        """The perform child raised and logged its own traceback (its status says so)."""
        return status == EXIT_PERFORM_RAISED

    # callbacks: append effects --------------------------------------------------------

    def announce_ready(self) -> None:
        self.outbox += [MarkIdle(), NotifyMaster()]

    def log_setup_failure(self, step: str) -> None:
        """``step`` is ``after_fork`` (the hook) or ``setup`` (the job's)."""
        message = (f"{self.label}: hook after_fork raised" if step == "after_fork"
                   else f"{self.label} setup failed")
        self.outbox += [LogFailure(message), ExitWith(EXIT_FAILED)]

    def note_master_gone(self) -> None:
        self._master_gone = True
        self.outbox += [
            LogLine("warning", f"{self.label}: master pid={self.master_pid} is gone; stopping"),
            SetStopping(),
            StartDeadline(),
        ]

    def reopen_log_files(self) -> None:
        self.outbox.append(ReopenLogFiles())

    def start_holding(self) -> None:
        self.outbox += [MarkIdle(), LogLine("info", f"{self.label} holding (USR2); CONT resumes")]

    def log_resume(self) -> None:
        self.outbox.append(LogLine("info", f"{self.label} resuming (CONT)"))

    def mark_idle(self) -> None:
        self.outbox.append(MarkIdle())

    def ask_for_replacement(self, reason: str, why: str, memory_mib: float | None = None
                            ) -> None:
        """Recycling (``max_performs`` or ``max_memory``): the worker does not stop; it
        asks its master for a replacement, which is a lifecycle moment (the notify pipe),
        and performs on until the master tells it to stop (QUIT)."""
        self.outbox += [AskForReplacement(reason, memory_mib), NotifyMaster(),
                        LogLine("info", f"{self.label} {why}: asking for a replacement, "
                                        "performing on until it is ready")]

    def log_perform_child_failure(self, pid: int, status: int) -> None:
        """``status``: the exit status, or minus the signal that killed the child."""
        how = f"killed by signal {-status}" if status < 0 else f"exit status {status}"
        self.outbox.append(LogLine("error", f"{self.label}: perform in pid={pid} failed ({how})"))
        self.count_perform_child_failure(pid, status)

    def count_perform_child_failure(self, pid: int, status: int) -> None:
        """One more failure in a row: counted for the master, and backed off.

        The master reads the count from the slot only when it wakes, and nothing else may
        wake it for a long while: a failure is a lifecycle moment, so the worker says so
        on the notify pipe, as it does when its setup is done.
        """
        self.failures_in_a_row += 1
        self.outbox += [CountFailure(), NotifyMaster(),
                        BackOff(backoff_delay(self.failures_in_a_row, self.backoff))]

    def end_failure_run(self) -> None:
        self.failures_in_a_row = 0

    def exit_quickly(self) -> None:
        self.outbox += [
            LogLine("info", f"{self.label}: quick stop (Shutdown); exiting without teardown"),
            ExitWith(EXIT_OK),
        ]

    def log_perform_failure(self) -> None:
        self.outbox += [LogFailure(f"{self.label} perform failed"), ExitWith(EXIT_FAILED)]

    def exit_cleanly(self) -> None:
        self.outbox.append(ExitWith(EXIT_OK))

    def log_teardown_failure(self) -> None:
        self.outbox += [LogFailure(f"{self.label} teardown failed"), ExitWith(EXIT_FAILED)]
