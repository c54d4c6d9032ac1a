"""The roster's books checked against a count from scratch: every index it keeps by hand
behind its one door, recounted from the workers themselves. The spec runner, the unit
driver and the property machine call it after every event; the core itself never does.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from prefork.core.recycling import replaced
from prefork.core.worker_machine import SAMPLED, WORKING, Worker, WorkerState

Slot = tuple[str, int]


def recount(roster: Any) -> list[str]:
    """Where the indexes differ from a count from scratch (for the tests)."""
    workers = list(roster._workers)
    errors = []
    active = {(w.group, w.slot): w for w in workers if w.is_active}
    if len(active) != sum(w.is_active for w in workers):
        errors.append("two live workers share a slot")
    if active != roster._active:
        errors.append(f"live slots {sorted(roster._active)} != {sorted(active)}")
    live_in = {group: sum(w.group == group for w in active.values())
               for group in {*roster._live_in, *(w.group for w in active.values())}}
    if {g: n for g, n in live_in.items() if n} != {
            g: n for g, n in roster._live_in.items() if n}:
        errors.append(f"live workers per group {roster._live_in} != {live_in}")
    vacant = {(group, slot) for group, target in roster.targets.items()
              for slot in range(target) if (group, slot) not in active}
    errors += roster.vacancies.recount(vacant)
    unforked = {(w.group, w.slot): w for w in workers if w.pid is None}
    if unforked != roster._unforked:
        errors.append(f"unforked {sorted(roster._unforked)} != {sorted(unforked)}")
    if {w.pid: w for w in workers if w.pid is not None} != roster._by_pid:
        errors.append("the pid index is not the forked workers")
    old = sum(w.generation < roster.generation for w in workers)
    if old != roster.old_workers:
        errors.append(f"{roster.old_workers} old workers counted, {old} found")
    deadlines = [w.deadline for w in workers if w.deadline is not None]
    if min(deadlines, default=None) != roster.deadlines.earliest():
        errors.append("the deadline heap lost the earliest worker deadline")
    sampled = Counter((w.group, w.state) for w in workers if w.state in SAMPLED)
    if +sampled != +Counter(roster._sampled):
        errors.append(f"idle and busy workers counted {roster._sampled}, found {sampled}")
    retiring = [w for w in workers if w.state is WorkerState.RETIRING]
    if set(retiring) != set(roster._retiring):
        errors.append("the retiring index is not the retiring workers")
    if list(roster._retiring.values()) != sorted(roster._retiring.values()):
        errors.append("the retiring index lost the order the workers began to retire in")
    working: dict[Slot, set[Worker]] = {}
    for w in workers:
        if w.state in WORKING:
            working.setdefault((w.group, w.slot), set()).add(w)
    if working != {key: set(ws) for key, ws in roster._working.items()}:
        errors.append("the working index is not the set-up workers not told to stop")
    if list(roster._machine.models) != workers:
        errors.append("the machine's models are not the roster's workers")
    if not set(roster._maybe_surplus) <= set(workers):
        errors.append("a buried worker is still up for retirement")
    errors += _recount_replaced(roster, working)
    return errors


def _recount_replaced(roster: Any, working: dict[Slot, set[Worker]]) -> list[str]:
    """Every retiring worker that is replaced now is among those a check is due for."""
    due = set(roster._maybe_replaced)
    errors = []
    if not due <= set(roster._retiring):
        errors.append("a worker that is not retiring is up for a replaced check")
    for worker in roster._retiring:
        key = (worker.group, worker.slot)
        if worker not in due and replaced(worker, working.get(key, ()),
                                          roster.targets.get(worker.group, 0)):
            errors.append(f"retiring {worker.label} is replaced, but no check is due for it")
    return errors
