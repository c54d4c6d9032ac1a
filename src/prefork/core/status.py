"""What the core tells the outside world of its own accord: the service manager's
notices and status line, and when to be woken.

The service manager (systemd) is told of the states it has words for (``NOTICES``:
ready once booted, reloading and ready again, stopping) and of the pool's counts
(``status_line``) whenever they change: ``Notify`` effects, which the adapter sends when
a service manager listens and drops otherwise. ``Told`` remembers what was last said of
each thing (the status line, the wake-up time), so that only changes are told.
"""

from __future__ import annotations

from typing import Any

from prefork.core.context import MachineContext
from prefork.core.effects import Effect, Notify
from prefork.core.master_states import LEAVING, M, MasterState
from prefork.core.roster import Roster

# What the service manager is told when the master enters a state (systemd's words, from
# sd_notify(3)): ready once up (booted, with the first workers forked by then; a reload
# over, or cut short by WINCH), reloading when a reload begins, stopping when the master
# begins to leave (again when a quick stop overtakes a graceful one: systemd does not
# mind). Only the state entered counts, so that each row of the table says it plainly.
NOTICES: dict[MasterState, str] = {
    M.RUNNING: "READY=1",
    M.PAUSED: "READY=1",
    M.RELOADING: "RELOADING=1",
    M.DRAINING: "STOPPING=1",
    M.TERMINATING: "STOPPING=1",
}


def notice(state: MasterState, now: float) -> Notify | None:
    """The ``Notify`` for the master entering ``state`` (``None``: the service manager is
    not told). ``RELOADING=1`` carries the time the reload began in ``CLOCK_MONOTONIC``
    microseconds, as ``Type=notify-reload`` requires: the core's clock is the adapter's
    monotonic clock."""
    message = NOTICES.get(state)
    if message is None:
        return None
    if state is M.RELOADING:
        message += f"\nMONOTONIC_USEC={int(now * 1_000_000)}"
    return Notify(message)


def status_line(state: MasterState, roster: Roster) -> str | None:
    """The pool in a line, for the service manager's ``STATUS=``: the state and the live
    workers against the targets (each group's too when there are several), or how many
    workers are left while leaving. ``None`` before boot and once stopped."""
    if state in (M.BOOTING, M.STOPPED):
        return None
    if state in LEAVING:
        return f"{state}: {len(roster)} workers left"
    targets = roster.targets
    counts = {group: roster.active_count(group) for group in targets}
    line = f"{state}: {sum(counts.values())}/{sum(targets.values())} workers"
    if len(targets) > 1:
        line += " (" + ", ".join(f"{group} {counts[group]}/{target}"
                                 for group, target in targets.items()) + ")"
    return line


class Told:
    """What the adapter was last told of each thing: it is told again only of a change."""

    def __init__(self, context: MachineContext) -> None:
        self.context = context
        self._last: dict[str, Any] = {}

    def tell(self, what: str, value: Any, effect: Effect) -> None:
        """Emit ``effect`` if ``value`` differs from the last one told of ``what``
        (nothing told yet counts as ``None``)."""
        if self._last.get(what) != value:
            self._last[what] = value
            self.context.emit(effect)
