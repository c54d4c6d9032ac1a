"""What the core lets the outside world see: a frozen picture of the pool at one moment.

The public API, the control socket and the status command read the pool through a
``Snapshot`` the core makes, never through the adapter's records or the core's own
objects: a snapshot cannot be changed by its reader, and it does not change under the
reader's feet as the pool moves on.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class WorkerView:
    """One worker as the core knows it.

    ``pid`` is ``None`` until forked; ``stopping`` is True once the master told it to
    stop (QUIT, TERM or a timeout's ABRT), when it no longer counts toward its group.
    """

    group: str
    slot: int
    pid: int | None
    state: str
    performs: int
    generation: int
    stopping: bool


@dataclass(frozen=True)
class Snapshot:
    """The pool at one moment: the master's state, each group's target, every worker."""

    state: str
    targets: tuple[tuple[str, int], ...]
    workers: tuple[WorkerView, ...]
    exit_code: int
    # how many workers ended, by outcome and, for a recycled one, why it was recycled
    # (``("retired", "max_memory", 3)``; the reason is ``None`` for any other end)
    ended: tuple[tuple[str, str | None, int], ...] = ()

    def pids(self, *, stopping: bool | None = None) -> list[int]:
        """The pids of the forked workers (only those told to stop, or only the others)."""
        return [
            worker.pid for worker in self.workers
            if worker.pid is not None and stopping in (None, worker.stopping)
        ]


def take_snapshot(state: object, targets: dict[str, int], workers: Iterable[Any],
                  exit_code: int, ended: Mapping[tuple[str, str | None], int] | None = None
                  ) -> Snapshot:
    """A snapshot of the master in ``state`` with these targets and workers (any objects
    with the fields of a worker: the core's own ``Worker`` models)."""
    return Snapshot(
        state=str(state),
        targets=tuple(targets.items()),
        workers=tuple(
            WorkerView(w.group, w.slot, w.pid, str(w.state), w.performs, w.generation,
                       w.stop_signal is not None)
            for w in workers
        ),
        exit_code=exit_code,
        ended=tuple((outcome, reason, n) for (outcome, reason), n in (ended or {}).items()),
    )
