"""The worker machine: the master's view of one worker process, and how each one ends.

Theory of operation
-------------------

A worker is born when the core asks for it (``Spawn``): it is ``spawning`` with no pid
until the adapter answers ``Forked``. It stays ``spawning`` until its scoreboard slot
says setup finished; from then on it moves between ``idle`` and ``performing`` as the
master reads the scoreboard. The master never sees every perform (it does not wake for
them), only the state the worker was in when it looked, so the ``reported_*`` triggers
say "the latest reading said so", and a reading that says nothing new is a row too. A
rise of the worker's count of failed performs (forking strategy) is a row of its own,
``performs_failed``, which the supervisor counts toward the restart intensity.

Whatever the master decides to do to a worker goes through ``stopping``: a graceful
stop (QUIT, with ``graceful_timeout`` to finish), a quick one (TERM, with
``kill_timeout``), or a timeout (ABRT: the worker dumps its stack and kills its own
process group; the master sends KILL after ``outcomes.DUMP_GRACE`` in case a perform stuck in C
code ran no handler). ``stop_signal`` remembers the soft signal sent, so a quick stop
can still overtake a graceful one but nothing is ever sent twice. When the stop deadline
passes the worker gets KILL once and its deadlines are cleared.

A worker has two clocks: ``timeout_at`` (its setup deadline while it sets up, its
perform deadline while it performs, kept while it is being stopped, and set again by
readings taken then) and ``kill_at`` (its stop's deadline). ``deadline`` is the earlier;
the ``deadline_passed`` rows of ``stopping`` tell one from the other
(``timeout_passed``). Only the master's own ABRT or KILL ends the timeout.

How a worker ends is decided by rows, not by the code around the table. Only
``exited`` (the adapter reaped the pid) and ``fork_failed`` lead to ``dead``, and the
guards of the ``exited`` rows sort every end into one ``Outcome``: a worker nobody told
to stop retired (status 0 at ``max_performs``), exited (status 0 once ready), failed its
setup (it died while spawning), was killed by a signal the master did not send, or
crashed; a worker told to stop retired, whatever its status; a worker whose timeout
passed already has its verdict (``setup failed`` or ``timed out``), given by the
``deadline_passed`` row when the master stopped waiting for it. The guards and the
callbacks of those rows are tables (``prefork.core.outcomes``); what each class costs
(back-off, restart intensity) is the restart policy's business (``prefork.core.restarts``).

A worker sees its group's settings and a ``MachineContext`` (the time, and the outbox
its callbacks append effects to), never the supervisor: the callbacks only set fields
and emit effects.
"""

from __future__ import annotations

from enum import StrEnum
from functools import partial
from typing import Any

from prefork.core.context import MachineContext
from prefork.core.outcomes import ABORTS, ENDS, EXIT_GUARDS, FailureCallbacks, Outcome, abort, end
from prefork.core.recycling import MemorySample, Recycling
from prefork.core.settings import GroupConfig
from prefork.core.signals import Sig
from prefork.core.worker_signals import SignalsSent


class WorkerState(StrEnum):
    """The states of the worker machine (the names used in specs/worker.md)."""

    SPAWNING = "spawning"
    IDLE = "idle"
    PERFORMING = "performing"
    RETIRING = "retiring"
    STOPPING = "stopping"
    DEAD = "dead"


S = WorkerState
ACTIVE = [S.SPAWNING, S.IDLE, S.PERFORMING]
READY = [S.IDLE, S.PERFORMING]
WORKING = [*READY, S.RETIRING]  # ready, or retiring: it performs, so it is capacity
# the two states the master only samples (the scoreboard's idle and performing)
SAMPLED = frozenset(READY)
LIVE = [*ACTIVE, S.RETIRING]  # not told to stop, not dead
UNREAPED = [*LIVE, S.STOPPING]

# Rows grouped by trigger then source, as specs/worker.md lists them.
WORKER_TRANSITIONS: list[dict[str, Any]] = [
    # the adapter answered the Spawn
    {"trigger": "forked", "source": S.SPAWNING, "dest": None, "after": "record_fork"},
    {"trigger": "fork_failed", "source": S.SPAWNING, "dest": S.DEAD, "after": "end_unforked"},
    # scoreboard readings
    {"trigger": "reported_spawning", "source": [S.SPAWNING, S.STOPPING], "dest": None},
    {"trigger": "reported_idle", "source": S.SPAWNING, "dest": S.IDLE, "after": "record_idle"},
    {"trigger": "reported_idle", "source": [S.IDLE, S.RETIRING], "dest": None,
     "after": "record_idle"},
    {"trigger": "reported_idle", "source": S.PERFORMING, "dest": S.IDLE, "after": "record_idle"},
    {"trigger": "reported_idle", "source": S.STOPPING, "dest": None, "after": "record_idle"},
    # two rows: from spawning the worker is ready (logged at info), from idle it is a
    # sample (logged at debug: worker_lines.transition_line)
    {"trigger": "reported_performing", "source": S.SPAWNING, "dest": S.PERFORMING,
     "after": "record_perform"},
    {"trigger": "reported_performing", "source": S.IDLE, "dest": S.PERFORMING,
     "after": "record_perform"},
    {"trigger": "reported_performing", "source": [S.PERFORMING, S.RETIRING], "dest": None,
     "after": "record_perform"},
    {"trigger": "reported_performing", "source": S.STOPPING, "dest": None,
     "after": "record_perform"},
    {"trigger": "performs_failed", "source": UNREAPED, "dest": None,
     "after": "record_failures"},
    # recycling (prefork.core.recycling): the worker asks to be replaced, or the master's
    # sample of its memory says so; it works on until its replacement is ready
    {"trigger": "recycle_requested", "source": READY, "dest": S.RETIRING,
     "after": "note_recycling"},
    {"trigger": "recycle_requested", "source": [S.RETIRING, S.STOPPING], "dest": None},
    {"trigger": "memory_sampled", "source": READY, "dest": S.RETIRING,
     "conditions": "over_memory_limit", "after": ["note_memory_recycling", "record_memory"]},
    {"trigger": "memory_sampled", "source": READY, "dest": None,
     "unless": "over_memory_limit", "after": "record_memory"},
    {"trigger": "memory_sampled", "source": S.RETIRING, "dest": S.STOPPING,
     "conditions": "growing_in_a_perform", "after": ["record_memory", "quit_growing"]},
    {"trigger": "memory_sampled", "source": S.RETIRING, "dest": None,
     "unless": "growing_in_a_perform", "after": "record_memory"},
    {"trigger": "memory_sampled", "source": [S.SPAWNING, S.STOPPING], "dest": None},
    # the master's decisions
    {"trigger": "stop_requested", "source": LIVE, "dest": S.STOPPING, "after": "send_quit"},
    {"trigger": "stop_requested", "source": S.STOPPING, "dest": None},
    {"trigger": "terminate_requested", "source": LIVE, "dest": S.STOPPING, "after": "send_term"},
    {"trigger": "terminate_requested", "source": S.STOPPING, "dest": None,
     "conditions": "told_to_quit", "after": "overtake_with_term"},
    {"trigger": "terminate_requested", "source": S.STOPPING, "dest": None,
     "unless": "told_to_quit"},
    {"trigger": "signal_forwarded", "source": UNREAPED, "dest": None, "after": "forward_signal"},
    # time: a passed setup or perform deadline is the worker's verdict
    {"trigger": "deadline_passed", "source": S.SPAWNING, "dest": S.STOPPING,
     "after": "abort_setup"},
    {"trigger": "deadline_passed", "source": [S.PERFORMING, S.RETIRING], "dest": S.STOPPING,
     "after": "abort_perform"},
    {"trigger": "deadline_passed", "source": S.STOPPING, "dest": None,
     "conditions": "timeout_passed", "unless": "set_up", "after": "abort_setup"},
    {"trigger": "deadline_passed", "source": S.STOPPING, "dest": None,
     "conditions": ["timeout_passed", "set_up"], "after": "abort_perform"},
    {"trigger": "deadline_passed", "source": S.STOPPING, "dest": None,
     "unless": "timeout_passed", "after": "send_kill"},
    # the adapter reaped the pid: the guards say how the worker ended
    {"trigger": "exited", "source": LIVE, "dest": S.DEAD,
     "conditions": ["exited_cleanly", "reached_max_performs"], "after": "end_retired"},
    {"trigger": "exited", "source": LIVE, "dest": S.DEAD, "conditions": "exited_cleanly",
     "unless": "reached_max_performs", "after": "end_exited"},
    {"trigger": "exited", "source": S.SPAWNING, "dest": S.DEAD, "unless": "exited_cleanly",
     "after": "end_in_setup"},
    {"trigger": "exited", "source": WORKING, "dest": S.DEAD, "conditions": "killed_by_signal",
     "unless": "exited_cleanly", "after": "end_killed"},
    {"trigger": "exited", "source": WORKING, "dest": S.DEAD,
     "unless": ["exited_cleanly", "killed_by_signal"], "after": "end_crashed"},
    {"trigger": "exited", "source": S.STOPPING, "dest": S.DEAD, "unless": "timed_out",
     "after": "end_stopped"},
    {"trigger": "exited", "source": S.STOPPING, "dest": S.DEAD, "conditions": "timed_out",
     "after": "end_after_timeout"},
]

WORKER_TRIGGERS: tuple[str, ...] = tuple(
    dict.fromkeys(row["trigger"] for row in WORKER_TRANSITIONS)
)


class Worker(SignalsSent, Recycling, FailureCallbacks):
    """One worker process, as the master knows it: a model of the shared worker machine.

    Fields are data the tables' guards and the supervisor's rules read: ``pid`` (``None``
    until forked), ``timeout_at`` and ``kill_at`` (its two clocks; ``deadline`` is the
    earlier), ``set_up`` (a reading said its setup finished), ``busy`` (the latest
    reading said it was performing), ``stop_signal`` (the soft signal it was sent, if
    any), ``killed_for`` (why the master gave up on it: ``timeout``, ``graceful_timeout``
    or ``kill_timeout``), ``interrupted`` (it was performing when sent TERM, ABRT or
    KILL), ``performs`` and ``failures`` (the highest counts seen), ``generation``
    (bumped by every reload, so a reload knows which workers are old), ``serial`` (its
    place in spawn order, which the roster sets: rules that pick among workers go in that
    order), ``outcome`` (how it ended, or for a timed-out worker how it will be counted).
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
        self.ready_at: float | None = None  # its first reading of idle or performing
        self.setup_seconds: float | None = None  # the setup timeout it was forked with
        self.timeout_at: float | None = None
        self.kill_at: float | None = None
        self.set_up = False
        self.busy = False
        self.heartbeat_at = 0.0  # when its current perform began (or it last said so)
        self.performs = 0
        self.failures = 0
        self.stop_signal: Sig | None = None
        self.killed_for: str | None = None
        self.interrupted = False
        self.serial = 0
        self.outcome: Outcome | None = None
        self.recycled_for: str | None = None  # why it is being recycled, if it is
        self.memory: MemorySample | None = None  # the master's latest sample of it

    def __repr__(self) -> str:
        return f"<Worker {self.label} {self.state}>"

    def __getattr__(self, name: str) -> Any:
        """The exited and timeout rows' guards and callbacks, from ``outcomes``' tables."""
        if name in EXIT_GUARDS:
            return partial(EXIT_GUARDS[name], self)
        if name in ENDS:
            return partial(end, self, ENDS[name])
        if name in ABORTS:
            return partial(abort, self, ABORTS[name])
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @property
    def label(self) -> str:
        """How log lines name this worker."""
        return f"group={self.group} slot={self.slot} pid={self.pid}"

    def fields(self, event: str, **more: object) -> tuple[tuple[str, object], ...]:
        """A log line's fields about this worker: the ``event``, its pool, slot, pid."""
        return (("event", event), ("pool", self.group), ("slot", self.slot),
                ("worker_pid", self.pid), *more.items())

    @property
    def is_active(self) -> bool:
        """Counts towards its group's target: not told to stop, not dead."""
        return self.state in ACTIVE

    @property
    def deadline(self) -> float | None:
        """The one time that matters next: the earlier of its timeout and its stop's."""
        times = [when for when in (self.timeout_at, self.kill_at) if when is not None]
        return min(times, default=None)

    def time_up(self, now: float) -> float | None:
        """How long it has been ready (``None``: it never finished its setup)."""
        return None if self.ready_at is None else now - self.ready_at

    def count_at_exit(self, performs: int | None) -> int:
        """Its final count of performs: the highest seen, the exit's own included."""
        return self.performs if performs is None else max(self.performs, performs)

    # guards (and ``set_up``, a plain field; the exit guards are in ``outcomes``) -----------

    def told_to_quit(self, *_: Any) -> bool:
        """Stopping gracefully (QUIT sent, KILL not yet), so a quick stop may overtake it."""
        return self.stop_signal is Sig.QUIT and self.kill_at is not None

    def timed_out(self, *_: Any) -> bool:
        """Its timeout passed: the master gave up on it and gave the verdict then."""
        return self.outcome is not None

    def timeout_passed(self, *_: Any) -> bool:
        """Stopping, its setup or perform timeout passed and its stop deadline has not."""
        now = self.context.now
        return (self.timeout_at is not None and self.timeout_at <= now
                and (self.kill_at is None or now < self.kill_at))

    # callbacks: set fields, append effects ----------------------------------------------

    def record_fork(self, pid: int) -> None:
        now = self.context.now
        self.pid = pid
        self.forked_at = now
        self.setup_seconds = self.settings.setup_timeout
        self.timeout_at = None if self.setup_seconds is None else now + self.setup_seconds

    def _record_ready(self, performs: int, busy: bool) -> None:
        """A reading of idle or performing: setup is over (the first such reading says
        when the worker became ready)."""
        self.performs = max(self.performs, performs)
        if self.ready_at is None:
            self.ready_at = self.context.now
        self.set_up, self.busy = True, busy

    def record_idle(self, heartbeat_at: float, performs: int) -> None:
        """A reading of idle: setup is over, no perform runs, so no timeout either."""
        self._record_ready(performs, busy=False)
        self.timeout_at = None

    def record_perform(self, heartbeat_at: float, performs: int) -> None:
        """A reading of performing: the perform deadline runs from the last heartbeat,
        also while the worker is being stopped, until the master gave up on it."""
        self._record_ready(performs, busy=True)
        self.heartbeat_at = heartbeat_at
        timeout = self.settings.timeout
        if self.killed_for is None:
            self.timeout_at = None if timeout is None else heartbeat_at + timeout
