"""The pool as plain data: what ``prefork status`` shows and the control socket sends.

One row per worker, one entry per pool, the master's own line, all made from the core's
``Snapshot`` (JSON-ready: numbers, strings, ``None``). Each worker column is one line of
``WORKER_COLUMNS``, so a field added to the snapshot is one line more here, and the
command's table shows every column it is sent.

Times are the core's clock: ages and the current perform's time are differences from
the snapshot's own ``at``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from prefork.core.readiness import not_ready_because
from prefork.core.snapshot import Snapshot, WorkerView
from prefork.posix.memory import MIB


def _since(start: float | None, at: float) -> float | None:
    return None if start is None else round(max(0.0, at - start), 3)


def _perform_seconds(worker: WorkerView, at: float) -> float | None:
    """How long the current perform has run (since its start or last heartbeat), when
    the worker performs and stamped its start (it does when a ``timeout`` is set)."""
    performing = worker.state == "performing" and worker.heartbeat_at > 0
    return _since(worker.heartbeat_at, at) if performing else None


# (column, value of a worker at the snapshot's time): the table's columns, in order
WORKER_COLUMNS: tuple[tuple[str, Callable[[WorkerView, float], Any]], ...] = (
    ("pool", lambda w, at: w.group),
    ("slot", lambda w, at: w.slot),
    ("pid", lambda w, at: w.pid),
    ("state", lambda w, at: f"{w.state} (stopping)" if w.stopping else w.state),
    ("performs", lambda w, at: w.performs),
    ("age", lambda w, at: _since(w.forked_at, at)),
    ("perform", _perform_seconds),
    ("uss", lambda w, at: None if w.uss_mib is None else round(w.uss_mib * MIB)),
    ("generation", lambda w, at: w.generation),
)


def worker_rows(snapshot: Snapshot) -> list[dict[str, Any]]:
    order = {group: i for i, (group, _) in enumerate(snapshot.targets)}
    workers = sorted(snapshot.workers, key=lambda w: (order.get(w.group, len(order)),
                                                      w.group, w.slot, w.generation))
    return [{name: value(worker, snapshot.at) for name, value in WORKER_COLUMNS}
            for worker in workers]


def pool_entries(snapshot: Snapshot) -> list[dict[str, Any]]:
    """Each pool's target, ready workers and counters (pools a reload dropped too)."""
    targets = dict(snapshot.targets)
    views = {view.name: view for view in snapshot.pools}
    entries = []
    for counts in snapshot.counts:
        entry: dict[str, Any] = {
            "pool": counts.group,
            "target": targets.get(counts.group),
            "ready": sum(1 for w in snapshot.workers if w.group == counts.group and w.ready),
        }
        view = views.get(counts.group)  # bounds, scaling, readings, the crash loop's line
        if view is not None:
            entry.update((name, value) for name, value in asdict(view).items()
                         if name not in ("name", "target"))
        for name, value in asdict(counts).items():
            if name != "group":
                entry[name] = dict(value) if isinstance(value, tuple) else value
        entries.append(entry)
    return entries


def status_document(snapshot: Snapshot, pid: int, name: str, loop_lag: float) -> dict[str, Any]:
    """The whole status: the master, its pools, its workers."""
    reasons = not_ready_because(snapshot)
    return {
        "master": {
            "pid": pid,
            "name": name,
            "state": snapshot.state,
            "ready": not reasons,
            "not_ready": reasons,
            "loop_lag": round(loop_lag, 6),
            "crash_loops": [list(loop) for loop in snapshot.crash_loops],
        },
        "pools": pool_entries(snapshot),
        "workers": worker_rows(snapshot),
    }
