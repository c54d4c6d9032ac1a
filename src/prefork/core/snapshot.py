"""What the core lets the outside world see: a frozen picture of the pool at one moment.

The public API, the control socket and the status command read the pool through a
``Snapshot`` the core makes, never through the adapter's records or the core's own
objects: a snapshot cannot be changed by its reader, and it does not change under the
reader's feet as the pool moves on.

Times in a snapshot are the core's clock (the adapter's monotonic seconds): ``at`` is
the moment it was taken, so a reader makes ages from differences (``at - forked_at``),
never from a clock of its own.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from prefork.core.tally import GroupCounts


@dataclass(frozen=True)
class WorkerView:
    """One worker as the core knows it.

    ``pid`` is ``None`` until forked; ``stopping`` is True once the master told it to
    stop (QUIT, TERM or a timeout's ABRT), when it no longer counts toward its group.
    ``forked_at``: when it was forked (``None``: not yet); ``heartbeat_at``: when its
    current perform began, or it last called ``heartbeat()`` (0: not known; the worker
    stamps it when a ``timeout`` is set). ``uss_mib``: the master's latest sample of its
    unique memory (``None``: not sampled; the master samples pools with ``max_memory``).
    """

    group: str
    slot: int
    pid: int | None
    state: str
    performs: int
    generation: int
    stopping: bool
    forked_at: float | None = None
    heartbeat_at: float = 0.0
    uss_mib: float | None = None

    @property
    def ready(self) -> bool:
        """Set up and not told to stop: idle or performing."""
        return self.state in ("idle", "performing") and not self.stopping


@dataclass(frozen=True)
class PoolView:
    """One pool (group) as the core knows it, for ``prefork status`` and the metrics.

    ``target`` is the number of workers it keeps now, within ``min_workers`` ..
    ``max_workers`` (``None``: no ceiling); ``scaling`` says whether its spare workers
    move that target (``min_spare`` or ``max_spare`` set). ``busy``, ``idle`` and
    ``spawning`` count its live workers by their latest reading. ``crash_loop`` is its
    crash loop in a line, ``pool mail: 5 crashes in 10s, next start in 8s`` (``None``:
    no failure within its ``restart_period`` and no slot waiting).
    """

    name: str
    target: int
    min_workers: int
    max_workers: int | None
    scaling: bool
    busy: int
    idle: int
    spawning: int
    crash_loop: str | None


@dataclass(frozen=True)
class Snapshot:
    """The pool at one moment: the master's state, each group's target, every worker;
    ``at``, the core's clock then; each pool's counters (``counts``); the slots in a
    crash loop (``crash_loops``: ``(group, slot, failures in a row)``); each pool's view
    (``pools``, in the config's order)."""

    state: str
    targets: tuple[tuple[str, int], ...]
    workers: tuple[WorkerView, ...]
    exit_code: int
    at: float = 0.0
    counts: tuple[GroupCounts, ...] = ()
    crash_loops: tuple[tuple[str, int, int], ...] = ()
    pools: tuple[PoolView, ...] = ()

    def pids(self, *, stopping: bool | None = None) -> list[int]:
        """The pids of the forked workers (only those told to stop, or only the others)."""
        return [
            worker.pid for worker in self.workers
            if worker.pid is not None and stopping in (None, worker.stopping)
        ]


def take_snapshot(state: object, targets: dict[str, int], workers: Iterable[Any],
                  exit_code: int, *, at: float = 0.0, counts: tuple[GroupCounts, ...] = (),
                  crash_loops: tuple[tuple[str, int, int], ...] = (),
                  pools: Iterable[PoolView] = ()) -> Snapshot:
    """A snapshot of the master in ``state`` with these targets and workers (any objects
    with the fields of a worker: the core's own ``Worker`` models) and pools."""
    return Snapshot(
        state=str(state),
        targets=tuple(targets.items()),
        workers=tuple(
            WorkerView(w.group, w.slot, w.pid, str(w.state), w.performs, w.generation,
                       w.stop_signal is not None, w.forked_at, w.heartbeat_at,
                       None if w.memory is None else w.memory.mib)
            for w in workers
        ),
        exit_code=exit_code,
        at=at,
        counts=counts,
        crash_loops=crash_loops,
        pools=tuple(pools),
    )
