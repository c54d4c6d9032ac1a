"""How a worker ends, as tables: the classes, the guards that sort a reap, the log lines.

The worker table (``worker_machine``) has one ``exited`` row per class of end; the guards
of those rows and what each row does are here, as data the rows name:

* ``EXIT_GUARDS``: the guards read with the reap's status and final count of performs;
* ``ENDS``: for each row's callback, the class it gives the worker (or ``None``: the
  verdict its deadline gave), the log level and the words of its log line;
* ``ABORTS``: for each timeout row's callback, the verdict and the words of its line.

The worker model looks these names up (``Worker.__getattr__``), so a new class of end is
a new row and a new line here, never another method. What each class costs (back-off,
restart intensity) is the restart policy's table (``prefork.core.restarts``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

# the worker model these read (``worker_machine.Worker``, which imports this module)
Worker = Any


class Outcome(StrEnum):
    """How a worker ended (or what it reported): the class word its log line carries."""

    RETIRED = "retired"  # status 0 at max_performs, or any end after being told to stop
    EXITED = "exited"  # status 0 on its own once ready: a retirement too
    CRASHED = "crashed"  # a non-zero status while ready
    KILLED = "killed"  # a signal the master did not send, while ready
    SETUP_FAILED = "setup failed"  # died while spawning, or its setup timed out
    TIMED_OUT = "timed out"  # its perform timed out: ABRT, then KILL if need be
    FORK_FAILED = "fork failed"  # there never was a process
    PERFORM_FAILED = "perform failed"  # a forked perform's child failed; the worker lives on

    def __str__(self) -> str:
        return self.value


def describe_status(status: int) -> str:
    """``ChildExited.status`` in words: an exit code, or the number of a fatal signal."""
    return f"killed by signal {-status}" if status < 0 else f"exit status {status}"


# guards of the exited rows: (worker, status, final performs from the reap) -> bool ------


def exited_cleanly(worker: Worker, status: int, performs: int | None = None) -> bool:
    """Status 0, once ready or after at least one perform (a worker the master never saw
    finish its setup, exiting 0 with nothing done, failed its setup)."""
    return status == 0 and (worker.set_up or worker.count_at_exit(performs) > 0)


def reached_max_performs(worker: Worker, status: int, performs: int | None = None) -> bool:
    limit = worker.settings.max_performs
    return limit is not None and worker.count_at_exit(performs) >= limit


def killed_by_signal(worker: Worker, status: int, performs: int | None = None) -> bool:
    return status < 0


EXIT_GUARDS: dict[str, Callable[..., bool]] = {
    "exited_cleanly": exited_cleanly,
    "reached_max_performs": reached_max_performs,
    "killed_by_signal": killed_by_signal,
}


# what each exited row does ----------------------------------------------------------


@dataclass(frozen=True)
class Ending:
    """An exited row's callback: the class it gives (``None``: the deadline's verdict),
    its log level, and the words after the class: ``words(worker, status, count)``."""

    outcome: Outcome | None
    level: str
    words: Callable[[Worker, int, int], str]


ENDS: dict[str, Ending] = {
    "end_retired": Ending(Outcome.RETIRED, "info",
                          lambda w, status, count: f"after {count} performs (max_performs)"),
    "end_exited": Ending(Outcome.EXITED, "info",
                         lambda w, status, count: f"by itself after {count} performs"),
    "end_in_setup": Ending(Outcome.SETUP_FAILED, "error",
                           lambda w, status, count: f"({describe_status(status)})"),
    "end_killed": Ending(Outcome.KILLED, "error", lambda w, status, count:
                         f"by signal {-status}, which the master did not send"),
    "end_crashed": Ending(Outcome.CRASHED, "error",
                          lambda w, status, count: f"({describe_status(status)})"),
    "end_stopped": Ending(Outcome.RETIRED, "info", lambda w, status, count:
                          f"as asked ({w.stop_signal}; {describe_status(status)})"),
    "end_after_timeout": Ending(None, "warning", lambda w, status, count:
                                f"and is gone ({describe_status(status)})"),
}


# what each timeout row does ---------------------------------------------------------


@dataclass(frozen=True)
class Abort:
    """A timeout row's callback: the verdict it gives, and why (``why(worker)``)."""

    verdict: Outcome
    why: Callable[[Worker], str]


ABORTS: dict[str, Abort] = {
    # the setup timeout of its fork (a reload may have changed the option since)
    "abort_setup": Abort(Outcome.SETUP_FAILED, lambda w: "timed out in setup after "
                         f"{w.setup_seconds:g}s (setup failed); "),
    "abort_perform": Abort(Outcome.TIMED_OUT, lambda w: "timed out; "),
}
