"""Events into the core: what happened, as plain frozen data.

Every event may carry ``at``, the adapter's monotonic clock when the event happened; the
core keeps the latest time it has seen and uses it for every deadline. ``Tick(now)`` is an
event that carries nothing but the time. Without ``at`` an event happens "now", at the
latest time the core has seen.

The adapter has one promise to keep: it answers every ``Spawn`` effect with ``Forked`` or
``ForkFailed`` before it hands the core any other event (forking is synchronous, so this
costs nothing). And one habit that makes the log exact: it reports a reaped worker's
final performs count in ``ChildExited``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from prefork.core.signals import Sig

if TYPE_CHECKING:
    from prefork.core.settings import PoolConfig
    from prefork.core.worker_machine import WorkerState


@dataclass(frozen=True)
class Event:
    """Base of every event: ``at`` is when it happened (``None``: at the latest time seen)."""

    at: float | None = field(default=None, kw_only=True)


@dataclass(frozen=True)
class Boot(Event):
    """The adapter is ready (handlers installed, preload done): start the pool.

    ``has_terminal`` tells the core whether the master has a controlling terminal, where a
    window resize sends WINCH, which must then not stop the workers.
    """

    has_terminal: bool = False


@dataclass(frozen=True)
class Signal(Event):
    """The master process received a signal."""

    signo: Sig


@dataclass(frozen=True)
class Forked(Event):
    """The outcome of ``Spawn(group, slot)``: a child with this pid now runs the job."""

    group: str
    slot: int
    pid: int


@dataclass(frozen=True)
class ForkFailed(Event):
    """The outcome of ``Spawn(group, slot)``: ``fork()`` failed (EAGAIN, ENOMEM...)."""

    group: str
    slot: int
    error: str


@dataclass(frozen=True)
class ChildExited(Event):
    """``waitpid`` reaped a child.

    ``status`` follows ``subprocess``'s ``returncode``: the exit code, or minus the number
    of the signal that killed the child. ``performs`` is the worker's final count from
    its scoreboard slot, when the adapter has one: it tells a worker that retired by
    itself (``max_performs``) from one that crashed, without a last ``Observed`` that
    could make the core act on a pid that is already gone. ``performing``: whether that
    final reading said a perform was running (``None``: no reading), which tells the
    ``on_worker_exit`` hook the perform a dead worker took with it.
    """

    pid: int
    status: int
    performs: int | None = None
    performing: bool | None = None


@dataclass(frozen=True)
class Observed(Event):
    """A reading of a worker's scoreboard slot.

    ``state`` is what the worker wrote (spawning, idle or performing); ``heartbeat_at`` is
    when its current perform began or it last called ``heartbeat()``; ``performs`` counts
    the performs it finished; ``failures`` counts the performs that failed without ending
    the worker (a forked perform's child that raised or died), which only the worker
    knows of: the core counts each one once, from the rise of this number. ``recycle``
    says the worker asks to be replaced (``max_performs`` or ``max_memory``), with
    ``memory_mib``, its own figure of its unique memory when it measured one.
    """

    pid: int
    state: WorkerState
    heartbeat_at: float = 0.0
    performs: int = 0
    failures: int = 0
    recycle: str | None = None
    memory_mib: float | None = None


@dataclass(frozen=True)
class MemorySampled(Event):
    """The master sampled worker ``pid``'s unique memory (USS): ``mib`` MiB.

    The adapter samples only when the worker's group has ``max_memory``, at a low rate.
    """

    pid: int
    mib: float


@dataclass(frozen=True)
class Tick(Event):
    """Time passed: the clock reads ``now``."""

    now: float


@dataclass(frozen=True)
class StartWorker(Event):
    """Command: one worker more in ``group`` (like TTIN)."""

    group: str | None = None


@dataclass(frozen=True)
class StopWorker(Event):
    """Command: one worker fewer in ``group``, stopped gracefully (like TTOU)."""

    group: str | None = None


@dataclass(frozen=True)
class StopAll(Event):
    """Command: stop every worker gracefully, then stop the master (like QUIT)."""


@dataclass(frozen=True)
class Scale(Event):
    """Command: ``group`` should have ``n`` workers."""

    group: str
    n: int


@dataclass(frozen=True)
class Reload(Event):
    """Command: take ``config`` (groups may come and go) and replace every worker."""

    config: PoolConfig


@dataclass(frozen=True)
class ConfigLoaded(Event):
    """The answer to ``ReadConfig``: the file read and validated into ``config``."""

    config: PoolConfig


@dataclass(frozen=True)
class ConfigRejected(Event):
    """The answer to ``ReadConfig``: the file at ``path`` is unreadable or invalid;
    ``why`` names the file, the pool and the key. The running config stays."""

    path: str
    why: str


@dataclass(frozen=True)
class Status(Event):
    """Command: answer with ``Reply(request, snapshot)``; ``request`` is the asker's token."""

    request: object = None


__all__ = [
    "Boot", "ChildExited", "ConfigLoaded", "ConfigRejected", "Event", "ForkFailed", "Forked",
    "MemorySampled", "Observed", "Reload", "Scale", "Signal", "StartWorker", "Status",
    "StopAll", "StopWorker", "Tick",
]
