"""The derived rules: what follows from the whole picture, after every event.

A signal, a reading or a reap changes one thing; what that means for the pool can only
be seen from all of it. After every event the supervisor ``settle``s: it fires the
master's four reviews (``REVIEWS``: stop when the last worker is reaped, finish a
reload when the last old worker is, give up on a crash loop, move the targets of the
pools that scale by their spare workers; rows whose guards or rule decide),
then retires one surplus worker, stops one recycled worker whose successor is ready, or
fills the missing slots, and starts again until no
rule has anything left to do. The rules read the master model (its state, config and
parts) and act through ``fire``, the supervisor's one place where triggers are fired.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prefork.core.master_states import SPAWNING_STATES, UP, MasterState

# the master model (``master_machine.MasterModel``, which imports this module)
Master = Any
Fire = Callable[..., None]

# what the supervisor reviews after every event, in this order
REVIEWS = ("workers_gone", "reload_finished", "restarts_exhausted", "spares_reviewed")


def settle(master: Master, fire: Fire) -> None:
    """Apply the derived rules until none of them has anything left to do."""
    while master.state is not MasterState.STOPPED and _apply_one_rule(master, fire):
        pass


def _apply_one_rule(master: Master, fire: Fire) -> bool:
    before = master.state
    for review in REVIEWS:
        if review == "spares_reviewed" and not master.scaling.wanted():
            continue  # no pool scales, and nothing to forget: a row that would do nothing
        fire(master, review)
        if master.state is not before:
            return True
    return (retire_one_surplus(master, fire) or stop_one_replaced(master, fire)
            or fill_missing_slots(master))


def retire_one_surplus(master: Master, fire: Fire) -> bool:
    """Up: the first surplus worker (beyond its target, worn out, or any while paused)
    is told to stop. Whether there was one."""
    if master.state not in UP:
        return False
    worker = master.roster.next_surplus(paused=master.state is MasterState.PAUSED)
    if worker is None:
        return False
    fire(worker, "stop_requested")
    return True


def stop_one_replaced(master: Master, fire: Fire) -> bool:
    """Up: the first recycled worker whose successor is ready (or whose slot is gone) is
    told to stop gracefully (``prefork.core.recycling``). Whether there was one."""
    if master.state not in UP:
        return False
    worker = master.roster.next_replaced()
    if worker is None:
        return False
    fire(worker, "stop_requested")
    return True


def fill_missing_slots(master: Master) -> bool:
    """Running or reloading, and not past the restart intensity: spawn every vacant slot
    whose back-off is over. Whether it spawned anything. Not while a ``ReadConfig``
    awaits its answer, which the adapter gives before anything else (so a Spawn asked for
    beside it could not be answered first)."""
    now = master.context.now
    if (master.state not in SPAWNING_STATES or master.awaiting_config is not None
            or master.restarts.exhausted(now)):
        return False
    due = master.roster.vacancies.due(now)
    for group, slot in due:
        master.roster.enlist(master.config.group(group), slot, master.forwarding.holding)
    return bool(due)
