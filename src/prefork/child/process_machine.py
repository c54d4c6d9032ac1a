"""The worker process's own machine: what one worker is doing, as it knows it.

Theory of operation
-------------------

``prefork.core.worker_machine`` is the master's view of a worker, pieced together from
scoreboard readings. This is the worker's view of itself, and it drives the process
from fork to exit (``prefork.child.runtime`` carries out what it asks).

A worker sets up once (``setting_up``), then alternates between ``idle`` and a *batch*
of performs: ``performing`` with the simple strategy, ``waiting`` with the forking one
(the worker then spends the batch in ``waitpid`` on one perform child after another).
A graceful stop (QUIT, ``max_performs`` reached, the master gone) leads through
``stopping``, where ``teardown()`` runs, to ``exited``; a failed setup, perform or
teardown leads straight to ``exited`` with status 1. USR2 parks an idle worker in
``holding`` until CONT.

Why batches and not performs: a trigger costs about 5 µs and, in a forked process,
copies the pages of every object it touches, while the simple strategy's loop costs
0.036 µs per perform and the forking one is measured against a bare fork loop. So the
machine is fired at lifecycle moments only: when a batch starts, and when it ends
because a signal is pending or the budget of ``max_performs`` is spent. Inside a batch
the loops write the scoreboard, one store per fact, and read one flag; the scoreboard is
the per-perform record, this machine the per-lifecycle one. The one row fired inside a
batch is ``perform_child_failed``, and only on that failure path.

Why requests are triggers and not signals: signal handlers run at any bytecode, so they
only set flags (``prefork.job.Flags``) and the runtime *attends* to them between
performs, firing one trigger per request it finds: ``master_lost``,
``reopen_requested``, then ``stop_requested`` or ``hold_requested`` (or, while holding,
``resume_requested``). A stop wins over a hold, and a stop while holding needs no CONT.
TERM and INT have no row: with the simple strategy they take the kernel's default
action, and with the forking one the worker passes them to its perform child and then
takes it; either way the process ends where it stands.

Why ``master_lost`` stays where it is: a worker learns of its master's death in three
ways (the parent-death signal, a ``getppid()`` check before setup, the lifeline pipe's
EOF while holding), possibly twice. The row logs once (``master_known_gone`` guards the
second) and raises the stop flag, so that the performs' ``worker.stopping`` turns True
at once and the next attend fires ``stop_requested``; during setup, that is right after
setup.

The table is data; the ``WorkerProcess`` callbacks only append effects to its outbox,
which ``fire`` hands to the runtime. Nothing here does I/O, so the tests drive the
machine with no process at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from transitions import Machine, MachineError

from prefork.core.errors import CoreError

EXIT_OK = 0
EXIT_FAILED = 1


class ProcessState(StrEnum):
    """The states of the worker process's machine (the names used in specs/process.md)."""

    SETTING_UP = "setting_up"
    IDLE = "idle"
    PERFORMING = "performing"
    WAITING = "waiting"
    HOLDING = "holding"
    STOPPING = "stopping"
    EXITED = "exited"

    def __str__(self) -> str:
        return self.value


# effects: what the runtime must do, as plain frozen data ----------------------------------


@dataclass(frozen=True)
class ProcessEffect:
    """Base of everything the worker process's machine asks its runtime to do."""


@dataclass(frozen=True)
class MarkIdle(ProcessEffect):
    """Write ``idle`` into the worker's scoreboard slot."""


@dataclass(frozen=True)
class NotifyMaster(ProcessEffect):
    """One byte on the notify pipe: the only time a worker wakes its master."""


@dataclass(frozen=True)
class ReopenLogFiles(ProcessEffect):
    """Reopen the worker's log files (after logrotate moved them)."""


@dataclass(frozen=True)
class SetStopping(ProcessEffect):
    """Raise the stop flag: ``worker.stopping`` turns True, and the loop stops next."""


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
    # batches of performs
    {"trigger": "batch_started", "source": S.IDLE, "dest": S.PERFORMING,
     "unless": "forks_performs"},
    {"trigger": "batch_started", "source": S.IDLE, "dest": S.WAITING,
     "conditions": "forks_performs"},
    {"trigger": "batch_ended", "source": IN_A_BATCH, "dest": S.IDLE},
    {"trigger": "perform_child_failed", "source": S.WAITING, "dest": None,
     "after": "log_perform_child_failure"},
    {"trigger": "perform_failed", "source": [*ATTENDING, *IN_A_BATCH], "dest": S.EXITED,
     "after": "log_perform_failure"},
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
    ``forking`` says which strategy its batches use. ``fire`` is the one way in: it
    fires a trigger and returns the effects the row asked for.
    """

    state: ProcessState

    def __init__(self, label: str = "worker", master_pid: int = 0,
                 forking: bool = False) -> None:
        self.begin(label, master_pid, forking)

    def begin(self, label: str, master_pid: int, forking: bool) -> None:
        """Forget everything but what a new worker is told (its state is the machine's)."""
        self.label = label
        self.master_pid = master_pid
        self.forking = forking
        self.outbox: list[ProcessEffect] = []
        self._master_gone = False

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
        ]

    def reopen_log_files(self) -> None:
        self.outbox.append(ReopenLogFiles())

    def start_holding(self) -> None:
        self.outbox += [MarkIdle(), LogLine("info", f"{self.label} holding (USR2); CONT resumes")]

    def log_resume(self) -> None:
        self.outbox.append(LogLine("info", f"{self.label} resuming (CONT)"))

    def mark_idle(self) -> None:
        self.outbox.append(MarkIdle())

    def log_perform_child_failure(self, pid: int, status: int) -> None:
        """``status``: the exit status, or minus the signal that killed the child."""
        how = f"killed by signal {-status}" if status < 0 else f"exit status {status}"
        self.outbox.append(LogLine("error", f"{self.label}: perform in pid={pid} failed ({how})"))

    def log_perform_failure(self) -> None:
        self.outbox += [LogFailure(f"{self.label} perform failed"), ExitWith(EXIT_FAILED)]

    def exit_cleanly(self) -> None:
        self.outbox.append(ExitWith(EXIT_OK))

    def log_teardown_failure(self) -> None:
        self.outbox += [LogFailure(f"{self.label} teardown failed"), ExitWith(EXIT_FAILED)]
