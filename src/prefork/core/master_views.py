"""What the master shows of itself: its process title and the ``Snapshot`` readers get.

A part of the master's model (``MasterModel`` takes it as a base), kept apart from the
rows: reading the pool changes nothing in it, and a new field for ``prefork status`` or
the metrics is added here, not among the callbacks.
"""

from __future__ import annotations

from typing import Any

from prefork.core.scaling import scales
from prefork.core.snapshot import PoolView, Snapshot, take_snapshot
from prefork.core.worker_machine import WorkerState


class MasterViews:
    """The master model's title, snapshot and pool views."""

    roster: Any
    config: Any
    state: Any
    exit_code: int
    context: Any
    tally: Any
    restarts: Any

    def title(self) -> str:
        """The master's process title: ``prefork master [NAME]: 4 workers in 2 pools
        (running)``: every worker not reaped yet, being forked or stopping included."""
        workers = len(self.roster)
        pools = len(self.roster.targets)
        return (f"prefork master [{self.config.name}]: {workers} worker"
                f"{'' if workers == 1 else 's'} in {pools} pool{'' if pools == 1 else 's'} "
                f"({self.state})")

    def snapshot(self) -> Snapshot:
        targets = self.roster.targets
        return take_snapshot(self.state, targets, self.roster.workers, self.exit_code,
                             at=self.context.now, counts=self.tally.counts(list(targets)),
                             crash_loops=self.restarts.crash_loops(),
                             pools=self._pool_views())

    def _pool_views(self) -> list[PoolView]:
        """Each pool of the running config: its target, bounds, readings, crash loop."""
        roster, now = self.roster, self.context.now
        return [
            PoolView(group.name, roster.targets.get(group.name, 0), group.min_workers,
                     group.max_workers, scales(group), roster.busy(group.name),
                     roster.idle(group.name),
                     sum(w.state is WorkerState.SPAWNING for w in roster.active(group.name)),
                     self.restarts.crash_loop(group.name, now))
            for group in self.config.groups
        ]
