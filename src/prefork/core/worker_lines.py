"""A worker's state change as a log line: its level, and the event it is filed under.

The roster writes one after every trigger that changed a worker's state (its one door,
``Roster.change``). The ``event`` field sorts them for a reader or a log pipeline:
``ready`` (setup done), ``replaced`` (stopped because another takes its place: a reload's
new generation, or a recycled worker's successor), ``transition`` (any other change).
"""

from __future__ import annotations

from prefork.core.effects import Log
from prefork.core.worker_machine import READY, SAMPLED, Worker, WorkerState


def transition_line(worker: Worker, before: WorkerState, trigger: str,
                    generation: int) -> Log:
    """``worker`` went from ``before`` by ``trigger``; ``generation`` is the current one.

    Between idle and performing the line is at debug: the master learns those from
    scoreboard samples taken whenever it happens to wake, so such a line tells when the
    master looked, not when the perform began or ended, and most performs are never seen
    at all (the scoreboard, the titles and ``Snapshot`` show the live state)."""
    after = worker.state
    if before is WorkerState.SPAWNING and after in READY:
        event = "ready"
    elif trigger == "stop_requested" and (worker.generation < generation
                                          or before is WorkerState.RETIRING):
        event = "replaced"
    else:
        event = "transition"
    level = "debug" if {before, after} <= SAMPLED else "info"
    return Log(level, f"worker {worker.label} {before} -> {after} ({trigger})",
               worker.fields(event, **{"from": str(before), "to": str(after),
                                       "trigger": trigger}))
