"""How a worker ends, as tables: the classes, the guards that sort a reap, the log lines.

The worker table (``worker_machine``) has one ``exited`` row per class of end; the guards
of those rows and what each row does are here, as data the rows name:

* ``EXIT_GUARDS``: the guards read with the reap's status and final count of performs;
* ``ENDS``: for each row's callback, the class it gives the worker (or ``None``: the
  verdict its deadline gave), the log level and the words of its log line;
* ``ABORTS``: for each timeout row's callback, the verdict and the words of its line;
* ``end`` and ``abort``: what every such callback does with its line of the tables.

The worker model looks these names up (``Worker.__getattr__``), so a new class of end is
a new row and a new line here, never another method. What each class costs (back-off,
restart intensity) is the restart policy's table (``prefork.core.restarts``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from prefork.core.effects import Log, RunHook
from prefork.core.signals import Sig

# the worker model these read (``worker_machine.Worker``, which imports this module)
Worker = Any


class Outcome(StrEnum):
    """How a worker ended (or what it reported): the class word its log line carries."""

    RETIRED = "retired"  # status 0 at max_performs, or any end after being told to stop
    # (a recycled worker's line and fields name why: max_performs or max_memory)
    EXITED = "exited"  # status 0 on its own once ready: a retirement too
    CRASHED = "crashed"  # a non-zero status while ready
    KILLED = "killed"  # a signal the master did not send, while ready
    SETUP_FAILED = "setup failed"  # died while spawning, or its setup timed out
    TIMED_OUT = "timed out"  # its perform timed out: ABRT, then KILL if need be
    FORK_FAILED = "fork failed"  # there never was a process
    PERFORM_FAILED = "perform failed"  # a forked perform's child failed; the worker lives on


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
                          (f"(recycled: {w.recycled_for}) " if w.recycled_for else "")
                          + f"as asked ({w.stop_signal}; {describe_status(status)})"),
    "end_after_timeout": Ending(None, "warning", lambda w, status, count:
                                f"and is gone ({describe_status(status)})"),
}


def end(worker: Worker, ending: Ending, status: int, performs: int | None = None) -> None:
    """An exited row's callback: the final count, the class, its line, and the
    ``on_worker_exit`` hook."""
    worker.performs = worker.count_at_exit(performs)
    if ending.outcome is not None:
        worker.outcome = ending.outcome
    worker.timeout_at = worker.kill_at = None
    words = ending.words(worker, status, worker.performs)
    running = worker.performs + 1 if worker.busy else None  # the perform it was in, if any
    worker.context.emit(Log(ending.level, f"worker {worker.label} {worker.outcome} {words}",
                            worker.fields("exited", outcome=str(worker.outcome), status=status,
                                          performs=worker.performs, perform=running,
                                          reason=worker.recycled_for)))
    # the hook's context: pid and status first (what the hook was handed before)
    worker.context.emit(RunHook("on_worker_exit", (worker.forked_pid(), status, worker.group,
                                                   worker.slot, worker.outcome, running)))


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

DUMP_GRACE = 1.0
"""Seconds between a timeout's ABRT and the KILL to the worker's process group: the worker
dumps its stack and kills its own group at once; the KILL is for a perform stuck in C code,
where no handler runs. Fixed (not ``kill_timeout``): a hung worker must not run on beside
its replacement."""


def abort(worker: Worker, abort: Abort) -> None:
    """A timeout row's callback: the verdict now; ABRT (a dump, then the worker kills its
    own group), and KILL after the dump grace if it is still there."""
    worker.outcome = abort.verdict
    worker.killed_for = "timeout"
    worker.interrupted = worker.interrupted or worker.busy
    worker.timeout_at = None
    worker.context.emit(Log("error", f"worker {worker.label} {abort.why(worker)}dumping its "
                                     "stack (ABRT)",
                            worker.fields("timed_out", outcome=str(abort.verdict))))
    due = worker.kill_at  # a stop's KILL already due is never put off by the timeout
    worker.send_soft(Sig.ABRT, DUMP_GRACE)
    if due is not None:
        worker.kill_at = min(worker.kill_at, due)


class FailureCallbacks:
    """The worker rows' callbacks for a failure that does not come with a reap: performs
    that failed inside a live worker, and a fork that never made a process (the exited
    and timeout rows' callbacks are ``end`` and ``abort``, above)."""

    context: Any
    failures: int
    outcome: Outcome | None
    label: str
    fields: Any

    def record_failures(self, failures: int) -> None:
        """The worker's count of failed performs rose to ``failures`` (the supervisor
        counts the rise toward the restart intensity)."""
        rise, self.failures = failures - self.failures, failures
        what = "perform failed" if rise == 1 else "performs failed"
        self.context.emit(Log("error", f"worker {self.label} {rise} {what} "
                                       f"({failures} in all)",
                              self.fields("perform_failed", failures=failures)))

    def end_unforked(self, error: str) -> None:
        self.outcome = Outcome.FORK_FAILED
        self.context.emit(Log("error", f"worker {self.label} fork failed: {error}",
                              self.fields("fork_failed", error=error)))
