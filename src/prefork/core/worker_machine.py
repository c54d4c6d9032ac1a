"""The worker machine: the master's view of one worker process.

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
passes the worker gets KILL once and its deadline is cleared. Only ``exited`` (the
adapter reaped the pid) leads to ``dead``, and from every live state: a worker can die
at any moment, and the benign race of a worker dying while told to stop is a row, not an
exception.

Each worker has at most one ``deadline``: the setup deadline while spawning, the perform
deadline while performing (when ``timeout`` is set), the kill deadline while stopping.
When it passes, the core fires ``deadline_passed`` and the row for the current state says
what that means.

The transitions below are data; the ``Worker`` callbacks only set fields and append
effects to the supervisor's outbox.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Any

from prefork.core.effects import Kill, Log
from prefork.core.signals import Sig

if TYPE_CHECKING:
    from prefork.core.settings import GroupConfig
    from prefork.core.supervisor import Supervisor


class WorkerState(StrEnum):
    """The states of the worker machine (the names used in specs/worker.md)."""

    SPAWNING = "spawning"
    IDLE = "idle"
    PERFORMING = "performing"
    STOPPING = "stopping"
    DEAD = "dead"

    def __str__(self) -> str:
        return self.value


S = WorkerState
ACTIVE = [S.SPAWNING, S.IDLE, S.PERFORMING]
UNREAPED = [*ACTIVE, S.STOPPING]

# Rows grouped by trigger then source, as specs/worker.md lists them.
WORKER_TRANSITIONS: list[dict[str, Any]] = [
    # the adapter answered the Spawn
    {"trigger": "forked", "source": S.SPAWNING, "dest": None, "after": "record_fork"},
    {"trigger": "fork_failed", "source": S.SPAWNING, "dest": S.DEAD, "after": "log_fork_failure"},
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
    # time
    {"trigger": "deadline_passed", "source": [S.SPAWNING, S.PERFORMING], "dest": S.STOPPING,
     "after": "send_abort"},
    {"trigger": "deadline_passed", "source": S.STOPPING, "dest": None, "after": "send_kill"},
    # the adapter reaped the pid
    {"trigger": "exited", "source": UNREAPED, "dest": S.DEAD},
]

WORKER_TRIGGERS: tuple[str, ...] = tuple(
    dict.fromkeys(row["trigger"] for row in WORKER_TRANSITIONS)
)


class Worker:
    """One worker process, as the master knows it: a model of the shared worker machine.

    Fields are data the tables' guards and the supervisor's rules read: ``pid`` (``None``
    until forked), ``deadline`` (the one time that matters in the current state),
    ``stop_signal`` (the soft signal it was sent, if any), ``generation`` (bumped by every
    reload, so a reload knows which workers are old), ``serial`` (its place in spawn
    order, which the supervisor sets: rules that pick among workers go in that order).
    """

    state: WorkerState

    def __init__(self, pool: Supervisor, settings: GroupConfig, slot: int,
                 generation: int) -> None:
        self.pool = pool
        self.settings = settings
        self.group: str = settings.name
        self.slot = slot
        self.generation = generation
        self.pid: int | None = None
        self.forked_at: float | None = None
        self.deadline: float | None = None
        self.performs = 0
        self.stop_signal: Sig | None = None
        self.serial = 0

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

    # guards -------------------------------------------------------------------------

    def told_to_quit(self, *_: Any) -> bool:
        """Stopping gracefully (QUIT sent, KILL not yet), so a quick stop may overtake it."""
        return self.stop_signal is Sig.QUIT and self.deadline is not None

    # callbacks: set fields, append effects ----------------------------------------------

    def record_fork(self, pid: int) -> None:
        self.pid = pid
        self.forked_at = self.pool.now
        timeout = self.settings.setup_timeout
        self.deadline = None if timeout is None else self.pool.now + timeout

    def log_fork_failure(self, error: str) -> None:
        self.pool.emit(Log("error", f"worker {self.label} fork failed: {error}"))

    def record_count(self, heartbeat_at: float, performs: int) -> None:
        """A reading while stopping: only its count matters."""
        self.count_performs(performs)

    def count_performs(self, performs: int) -> None:
        """Keep the highest performs count seen (a reading never lowers it)."""
        self.performs = max(self.performs, performs)

    def record_reading(self, heartbeat_at: float, performs: int) -> None:
        """Keep the latest reading; the perform deadline runs from the last heartbeat."""
        self.count_performs(performs)
        timeout = self.settings.timeout
        performing = self.state is S.PERFORMING and timeout is not None
        self.deadline = heartbeat_at + timeout if performing else None

    def _send_soft(self, signo: Sig, grace: float) -> None:
        self.stop_signal = signo
        self.deadline = self.pool.now + grace
        self.pool.emit(Kill(self._pid(), signo))

    def send_quit(self) -> None:
        self._send_soft(Sig.QUIT, self.settings.graceful_timeout)

    def send_term(self) -> None:
        self._send_soft(Sig.TERM, self.settings.kill_timeout)

    def overtake_with_term(self) -> None:
        """A quick stop after a graceful one: TERM now, and KILL no later than before."""
        earlier = self.deadline  # not None: told_to_quit guards this row
        self.send_term()
        self.deadline = min(self.pool.now + self.settings.kill_timeout, earlier)

    def send_abort(self) -> None:
        """A setup or perform timeout: ask for a stack dump, then KILL after kill_timeout."""
        self.pool.emit(Log("error", f"worker {self.label} timed out; dumping its stack (ABRT)"))
        self._send_soft(Sig.ABRT, self.settings.kill_timeout)

    def send_kill(self) -> None:
        self.deadline = None
        self.pool.emit(Log("warning", f"worker {self.label} did not stop in time; KILL"))
        self.pool.emit(Kill(self._pid(), Sig.KILL))

    def forward_signal(self, signo: Sig) -> None:
        self.pool.emit(Kill(self._pid(), signo))

    def _pid(self) -> int:
        """The pid to signal: the supervisor never acts on a worker before ``Forked``."""
        assert self.pid is not None, f"{self.label}: signalled before Forked"
        return self.pid
