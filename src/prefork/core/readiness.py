"""Whether a master is ready, from its snapshot: what ``prefork check`` and ``/readyz`` say.

Ready means the pool does what it was set up to do, now: the master is running (not
booting, reloading, on hold or leaving: a stop signal makes it unready at once), every
pool has at least its target of workers set up and not told to stop, and no slot is in a
crash loop (failed more than once in a row, its refill backed off). The reasons name
what is missing, one short phrase each, for a probe's log.

Liveness is not decided here: a master whose loop answers is live, and one whose loop is
stalled answers nothing (the client's timeout says so).
"""

from __future__ import annotations

from prefork.core.snapshot import Snapshot

_LEAVING = ("draining", "terminating", "stopped")


def not_ready_because(snapshot: Snapshot) -> list[str]:
    """Why the master is not ready (empty: it is)."""
    reasons: list[str] = []
    if snapshot.state != "running":
        reasons.append(f"the master is {snapshot.state}")
    if snapshot.state in _LEAVING:  # its pools empty on purpose: that says it all
        return reasons
    for group, target in snapshot.targets:
        ready = sum(1 for w in snapshot.workers if w.group == group and w.ready)
        if ready < target:
            reasons.append(f"pool {group} has {ready}/{target} workers ready")
    for group, slot, failures in snapshot.crash_loops:
        reasons.append(f"pool {group} slot {slot} is in a crash loop "
                       f"({failures} failures in a row)")
    return reasons
