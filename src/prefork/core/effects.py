"""Effects out of the core: what the adapter must do, as plain frozen data.

They are named as commands. The adapter does nothing the core did not ask for, and the
core asks for nothing it cannot account for: every ``Kill`` targets a pid the core forked
and has not reaped, every ``Spawn`` is answered by ``Forked`` or ``ForkFailed``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prefork.core.signals import Sig


@dataclass(frozen=True)
class Effect:
    """Base of every effect."""


@dataclass(frozen=True)
class Spawn(Effect):
    """Fork a worker for ``slot`` of ``group``; answer with ``Forked`` or ``ForkFailed``.

    ``held``: the workers are on hold (USR2, no CONT since), so the new one starts held,
    as if it had been sent USR2 before its first perform.
    """

    group: str
    slot: int
    held: bool = False


@dataclass(frozen=True)
class Kill(Effect):
    """Send ``signo`` to worker ``pid`` (and, for KILL, to its whole process group)."""

    pid: int
    signo: Sig


Fields = tuple[tuple[str, object], ...]


@dataclass(frozen=True)
class Log(Effect):
    """Write one log line at ``level`` (debug, info, warning, error).

    ``fields`` are the line's facts for machine-read logs: ``event`` names the lifecycle
    event (``spawned``, ``ready``, ``exited``...), beside the pool, slot and pid of the
    worker it is about. They say what the message says, so they are not compared: two
    lines with the same level and words are the same line.
    """

    level: str
    message: str
    fields: Fields = field(default=(), compare=False)


@dataclass(frozen=True)
class ReopenLogs(Effect):
    """Reopen the master's log files (after logrotate moved them)."""


@dataclass(frozen=True)
class SetTitle(Effect):
    """Set the master's process title."""

    text: str


@dataclass(frozen=True)
class WakeAt(Effect):
    """Wake the core with a ``Tick`` at ``when`` (monotonic); ``None``: no wake-up needed."""

    when: float | None


@dataclass(frozen=True)
class ReadConfig(Effect):
    """Read and validate the config file at ``path`` again (HUP).

    Answer with ``ConfigLoaded`` or ``ConfigRejected`` before any other event, as a
    ``Spawn`` is answered: the core never waits in a state of its own for the answer.
    """

    path: str


@dataclass(frozen=True)
class RunHook(Effect):
    """Run the user's hook ``name`` in the master with ``args`` (nothing when none is set).

    A hook that raises is logged with its traceback by the adapter; the core goes on.
    """

    name: str
    args: tuple[object, ...] = ()


@dataclass(frozen=True)
class Reply(Effect):
    """Answer the ``Status`` request ``request`` with ``snapshot``."""

    request: object
    snapshot: object


@dataclass(frozen=True)
class Notify(Effect):
    """Tell the service manager (systemd's ``sd_notify`` protocol) ``message``: one or more
    ``KEY=VALUE`` lines (``READY=1``, ``RELOADING=1``, ``STOPPING=1``, ``STATUS=...``).

    The first ``READY=1`` is also the master's word that it is ready (its first workers
    forked): the adapter writes the pid file and releases a daemon's launcher then. With
    no service manager listening, the adapter says nothing more.
    """

    message: str


@dataclass(frozen=True)
class Exit(Effect):
    """Every worker is reaped: exit the master with ``code``."""

    code: int

