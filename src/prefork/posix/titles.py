"""What ``ps`` and ``top`` show for each process of a pool.

::

    prefork master [NAME]: 6 workers in 2 pools (running)     the core's SetTitle
    prefork worker [NAME/mail#0]: idle
    prefork worker [NAME/mail#0]: performing since 12:01:03
    prefork worker [NAME/mail#0]: stopping
    prefork perform [NAME/mail#0]: since 12:01:03              a forked perform's child

A worker's title changes at lifecycle moments (its process machine fires when a batch of
performs starts and when it ends, never per perform), so "performing since" is the time
the worker went busy: with a steady stream of work, the first perform of the run, not
the one running now. A live counter of seconds would need a title write per perform or
a timer in every worker; neither is worth it. The scoreboard (``Snapshot``) has the
per-perform truth.
"""

from __future__ import annotations

import time

from prefork.posix import process


def worker_title(name: str, pool: str, slot: int, state: str, since: float | None = None,
                 role: str = "worker") -> str:
    """The title of a worker (``role="perform"``: a forked perform's child) in ``state``,
    busy since the wall-clock time ``since``."""
    head = f"prefork {role} [{name}/{pool}#{slot}]:"
    if since is not None:
        clock = time.strftime("%H:%M:%S", time.localtime(since))
        return f"{head} {state} since {clock}" if state else f"{head} since {clock}"
    return f"{head} {state}"


def set_worker_title(name: str, pool: str, slot: int, state: str, since: float | None = None,
                     role: str = "worker") -> None:
    process.set_title(worker_title(name, pool, slot, state, since, role))
