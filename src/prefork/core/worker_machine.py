"""The worker machine: the master's view of one worker process, and how each one ends.

Theory of operation
-------------------

A worker is born when the core asks for it (``Spawn``): it is ``spawning`` with no pid
until the adapter answers ``Forked``. It stays ``spawning`` until its scoreboard slot
says setup finished; from then on it moves between ``idle`` and ``performing`` as the
master reads the scoreboard. The master never sees every perform (it does not wake for
them), only the state the worker was in when it looked, so the ``reported_*`` triggers
say "the latest reading said so", and a reading that says nothing new is a row too.

Whatever the master decides to do to a worker goes through ``stopping``: a graceful
stop (QUIT, with ``graceful_timeout`` to finish), a quick one (TERM, with
``kill_timeout``), or a timeout (ABRT so the worker dumps its stack, then
``kill_timeout``). ``stop_signal`` remembers the soft signal sent, so a quick stop can
still overtake a graceful one but nothing is ever sent twice. When the kill deadline
passes the worker gets KILL once and its deadline is cleared.

How a worker ends is decided by rows, not by the code around the table. Only
``exited`` (the adapter reaped the pid) and ``fork_failed`` lead to ``dead``, and the
guards of the ``exited`` rows sort every end into one ``Outcome``: a worker nobody told
to stop retired (status 0 at ``max_performs``), exited cleanly (status 0 after some
performs), failed its setup (it died while spawning), was killed by a signal the master
did not send, or crashed; a worker told to stop retired, whatever its status; a worker
whose deadline passed already has its verdict (``setup failed`` or ``timed out``), given
by the ``deadline_passed`` row when the master stopped waiting for it. The row's
callback logs the outcome with its class word and records it in ``outcome``; what each
class costs (back-off, restart intensity) is the restart policy's business
(``prefork.core.restarts``).

Each worker has at most one ``deadline``: the setup deadline while spawning, the perform
deadline while performing (when ``timeout`` is set), the kill deadline while stopping.

A worker sees its group's settings and a ``MachineContext`` (the time, and the outbox
its callbacks append effects to), never the supervisor: the callbacks only set fields
and emit effects.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from prefork.core.context import MachineContext
from prefork.core.effects import Kill, Log, RunHook
from prefork.core.settings import GroupConfig
from prefork.core.signals import Sig


class WorkerState(StrEnum):
    """The states of the worker machine (the names used in specs/worker.md)."""

    SPAWNING = "spawning"
    IDLE = "idle"
    PERFORMING = "performing"
    STOPPING = "stopping"
    DEAD = "dead"

    def __str__(self) -> str:
        return self.value


class Outcome(StrEnum):
    """How a worker ended: the class word its log line carries."""

    RETIRED = "retired"  # status 0 at max_performs, or any end after being told to stop
    EXITED = "exited"  # status 0 after some performs, on its own: a retirement too
    CRASHED = "crashed"  # a non-zero status (or 0 before any perform) while ready
    KILLED = "killed"  # a signal the master did not send, while ready
    SETUP_FAILED = "setup failed"  # died while spawning, or its setup timed out
    TIMED_OUT = "timed out"  # its perform timed out: ABRT, then KILL if need be
    FORK_FAILED = "fork failed"  # there never was a process

    def __str__(self) -> str:
        return self.value


S = WorkerState
ACTIVE = [S.SPAWNING, S.IDLE, S.PERFORMING]
READY = [S.IDLE, S.PERFORMING]
UNREAPED = [*ACTIVE, S.STOPPING]

# Rows grouped by trigger then source, as specs/worker.md lists them.
WORKER_TRANSITIONS: list[dict[str, Any]] = [
    # the adapter answered the Spawn
    {"trigger": "forked", "source": S.SPAWNING, "dest": None, "after": "record_fork"},
    {"trigger": "fork_failed", "source": S.SPAWNING, "dest": S.DEAD, "after": "end_unforked"},
    # scoreboard readings
    {"trigger": "reported_spawning", "source": [S.SPAWNING, S.STOPPING], "dest": None},
    {"trigger": "reported_idle", "source": S.SPAWNING, "dest": S.IDLE, "after": "record_reading"},
    {"trigger": "reported_idle", "source": S.IDLE, "dest": None, "after": "record_reading"},
    {"trigger": "reported_idle", "source": S.PERFORMING, "dest": S.IDLE,
     "after": "record_reading"},
    {"trigger": "reported_idle", "source": S.STOPPING, "dest": None, "after": "record_count"},
    {"trigger": "reported_performing", "source": [S.SPAWNING, S.IDLE], "dest": S.PERFORMING,
     "after": "record_reading"},
    {"trigger": "reported_performing", "source": S.PERFORMING, "dest": None,
     "after": "record_reading"},
    {"trigger": "reported_performing", "source": S.STOPPING, "dest": None,
     "after": "record_count"},
    # the master's decisions
    {"trigger": "stop_requested", "source": ACTIVE, "dest": S.STOPPING, "after": "send_quit"},
    {"trigger": "stop_requested", "source": S.STOPPING, "dest": None},
    {"trigger": "terminate_requested", "source": ACTIVE, "dest": S.STOPPING, "after": "send_term"},
    {"trigger": "terminate_requested", "source": S.STOPPING, "dest": None,
     "conditions": "told_to_quit", "after": "overtake_with_term"},
    {"trigger": "terminate_requested", "source": S.STOPPING, "dest": None,
     "unless": "told_to_quit"},
    {"trigger": "signal_forwarded", "source": UNREAPED, "dest": None, "after": "forward_signal"},
    # time: a passed setup or perform deadline is the worker's verdict
    {"trigger": "deadline_passed", "source": S.SPAWNING, "dest": S.STOPPING,
     "after": "abort_setup"},
    {"trigger": "deadline_passed", "source": S.PERFORMING, "dest": S.STOPPING,
     "after": "abort_perform"},
    {"trigger": "deadline_passed", "source": S.STOPPING, "dest": None, "after": "send_kill"},
    # the adapter reaped the pid: the guards say how the worker ended
    {"trigger": "exited", "source": ACTIVE, "dest": S.DEAD,
     "conditions": ["exited_cleanly", "reached_max_performs"], "after": "end_retired"},
    {"trigger": "exited", "source": ACTIVE, "dest": S.DEAD, "conditions": "exited_cleanly",
     "unless": "reached_max_performs", "after": "end_exited"},
    {"trigger": "exited", "source": S.SPAWNING, "dest": S.DEAD, "unless": "exited_cleanly",
     "after": "end_in_setup"},
    {"trigger": "exited", "source": READY, "dest": S.DEAD, "conditions": "killed_by_signal",
     "unless": "exited_cleanly", "after": "end_killed"},
    {"trigger": "exited", "source": READY, "dest": S.DEAD,
     "unless": ["exited_cleanly", "killed_by_signal"], "after": "end_crashed"},
    {"trigger": "exited", "source": S.STOPPING, "dest": S.DEAD, "unless": "timed_out",
     "after": "end_stopped"},
    {"trigger": "exited", "source": S.STOPPING, "dest": S.DEAD, "conditions": "timed_out",
     "after": "end_after_timeout"},
]

WORKER_TRIGGERS: tuple[str, ...] = tuple(
    dict.fromkeys(row["trigger"] for row in WORKER_TRANSITIONS)
)


def describe_status(status: int) -> str:
    """``ChildExited.status`` in words: an exit code, or the number of a fatal signal."""
    return f"killed by signal {-status}" if status < 0 else f"exit status {status}"


class Worker:
    """One worker process, as the master knows it: a model of the shared worker machine.

    Fields are data the tables' guards and the supervisor's rules read: ``pid`` (``None``
    until forked), ``deadline`` (the one time that matters in the current state),
    ``stop_signal`` (the soft signal it was sent, if any), ``generation`` (bumped by every
    reload, so a reload knows which workers are old), ``serial`` (its place in spawn
    order, which the roster sets: rules that pick among workers go in that order),
    ``outcome`` (how it ended, or for a timed-out worker how it will be counted).
    """

    state: WorkerState

    def __init__(self, settings: GroupConfig, slot: int, generation: int,
                 context: MachineContext) -> None:
        self.settings = settings
        self.group: str = settings.name
        self.slot = slot
        self.generation = generation
        self.context = context
        self.pid: int | None = None
        self.forked_at: float | None = None
        self.deadline: float | None = None
        self.performs = 0
        self.stop_signal: Sig | None = None
        self.serial = 0
        self.outcome: Outcome | None = None

    def __repr__(self) -> str:
        return f"<Worker {self.label} {self.state}>"

    @property
    def label(self) -> str:
        """How log lines name this worker."""
        return f"group={self.group} slot={self.slot} pid={self.pid}"

    @property
    def is_active(self) -> bool:
        """Counts towards its group's target: not told to stop, not dead."""
        return self.state in ACTIVE

    @property
    def worn_out(self) -> bool:
        """It has done ``max_performs`` performs: time to retire it."""
        return self._at_limit(self.performs)

    def count_at_exit(self, performs: int | None) -> int:
        """Its final count of performs: the highest seen, the exit's own included."""
        return self.performs if performs is None else max(self.performs, performs)

    def _at_limit(self, performs: int) -> bool:
        limit = self.settings.max_performs
        return limit is not None and performs >= limit

    # guards -------------------------------------------------------------------------

    def told_to_quit(self, *_: Any) -> bool:
        """Stopping gracefully (QUIT sent, KILL not yet), so a quick stop may overtake it."""
        return self.stop_signal is Sig.QUIT and self.deadline is not None

    def exited_cleanly(self, status: int, performs: int | None = None) -> bool:
        """Status 0 after at least one perform (before any, it did nothing useful)."""
        return status == 0 and self.count_at_exit(performs) > 0

    def reached_max_performs(self, status: int, performs: int | None = None) -> bool:
        return self._at_limit(self.count_at_exit(performs))

    def killed_by_signal(self, status: int, performs: int | None = None) -> bool:
        return status < 0

    def timed_out(self, *_: Any) -> bool:
        """Its deadline passed: the master gave up on it and gave the verdict then."""
        return self.outcome is not None

    # callbacks: set fields, append effects ----------------------------------------------

    def record_fork(self, pid: int) -> None:
        now = self.context.now
        self.pid = pid
        self.forked_at = now
        timeout = self.settings.setup_timeout
        self.deadline = None if timeout is None else now + timeout

    def record_count(self, heartbeat_at: float, performs: int) -> None:
        """A reading while stopping: only its count matters."""
        self.performs = max(self.performs, performs)

    def record_reading(self, heartbeat_at: float, performs: int) -> None:
        """Keep the latest reading; the perform deadline runs from the last heartbeat."""
        self.performs = max(self.performs, performs)
        timeout = self.settings.timeout
        performing = self.state is S.PERFORMING and timeout is not None
        self.deadline = heartbeat_at + timeout if performing else None

    def _send_soft(self, signo: Sig, grace: float) -> None:
        self.stop_signal = signo
        self.deadline = self.context.now + grace
        self.context.emit(Kill(self._pid(), signo))

    def send_quit(self) -> None:
        self._send_soft(Sig.QUIT, self.settings.graceful_timeout)

    def send_term(self) -> None:
        self._send_soft(Sig.TERM, self.settings.kill_timeout)

    def overtake_with_term(self) -> None:
        """A quick stop after a graceful one: TERM now, and KILL no later than before."""
        earlier = self.deadline  # not None: told_to_quit guards this row
        self.send_term()
        self.deadline = min(self.context.now + self.settings.kill_timeout, earlier)

    def abort_setup(self) -> None:
        """Setup took longer than ``setup_timeout``: the setup failed; dump, then KILL."""
        self._abort(Outcome.SETUP_FAILED,
                    f"timed out in setup after {self.settings.setup_timeout:g}s (setup failed); ")

    def abort_perform(self) -> None:
        """A perform went past ``timeout``: it timed out; dump, then KILL."""
        self._abort(Outcome.TIMED_OUT, "timed out; ")

    def _abort(self, verdict: Outcome, why: str) -> None:
        self.outcome = verdict
        self.context.emit(Log("error", f"worker {self.label} {why}dumping its stack (ABRT)"))
        self._send_soft(Sig.ABRT, self.settings.kill_timeout)

    def send_kill(self) -> None:
        self.deadline = None
        self.context.emit(Log("warning", f"worker {self.label} did not stop in time; KILL"))
        self.context.emit(Kill(self._pid(), Sig.KILL))

    def forward_signal(self, signo: Sig) -> None:
        self.context.emit(Kill(self._pid(), signo))

    # the ends: one callback per exited row ----------------------------------------------

    def end_unforked(self, error: str) -> None:
        self.outcome = Outcome.FORK_FAILED
        self.context.emit(Log("error", f"worker {self.label} fork failed: {error}"))

    def end_retired(self, status: int, performs: int | None = None) -> None:
        self._end(Outcome.RETIRED, status, performs, "info",
                  f"after {self.count_at_exit(performs)} performs (max_performs)")

    def end_exited(self, status: int, performs: int | None = None) -> None:
        self._end(Outcome.EXITED, status, performs, "info",
                  f"by itself after {self.count_at_exit(performs)} performs")

    def end_in_setup(self, status: int, performs: int | None = None) -> None:
        self._end(Outcome.SETUP_FAILED, status, performs, "error",
                  f"({describe_status(status)})")

    def end_killed(self, status: int, performs: int | None = None) -> None:
        self._end(Outcome.KILLED, status, performs, "error",
                  f"by signal {-status}, which the master did not send")

    def end_crashed(self, status: int, performs: int | None = None) -> None:
        before = " before any perform" if status == 0 else ""
        self._end(Outcome.CRASHED, status, performs, "error",
                  f"({describe_status(status)}{before})")

    def end_stopped(self, status: int, performs: int | None = None) -> None:
        self._end(Outcome.RETIRED, status, performs, "info",
                  f"as asked ({self.stop_signal}; {describe_status(status)})")

    def end_after_timeout(self, status: int, performs: int | None = None) -> None:
        assert self.outcome is not None  # timed_out guards this row
        self._end(self.outcome, status, performs, "warning",
                  f"and is gone ({describe_status(status)})")

    def _end(self, outcome: Outcome, status: int, performs: int | None, level: str,
             details: str) -> None:
        self.performs = self.count_at_exit(performs)
        self.outcome = outcome
        self.deadline = None
        self.context.emit(Log(level, f"worker {self.label} {outcome} {details}"))
        self.context.emit(RunHook("on_worker_exit", (self._pid(), status)))

    def _pid(self) -> int:
        """The pid to signal: the supervisor never acts on a worker before ``Forked``."""
        assert self.pid is not None, f"{self.label}: signalled before Forked"
        return self.pid
