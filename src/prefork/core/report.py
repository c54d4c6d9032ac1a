"""The shutdown report: one log line that says how a stop of the master went.

The supervisor records every worker reaped while the master is leaving (draining or
terminating); the master's last row (``workers_gone``) logs ``line()`` right before
``Exit``. specs/master.md ("The shutdown report") says what each number means.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from prefork.core.signals import Sig

if TYPE_CHECKING:
    from prefork.core.worker_machine import Worker

# why the master killed a worker, in the order the report names them
KILL_REASONS = ("timeout", "graceful_timeout", "kill_timeout")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


class StopReport:
    """The tally of the workers a stop ended."""

    def __init__(self) -> None:
        self.graceful = 0  # told to QUIT, gone without KILL
        self.by_term = 0  # told to TERM, gone without KILL
        self.killed: Counter[str] = Counter()  # why -> how many
        self.finished = 0  # performs, from the workers' final counts
        self.interrupted = 0  # workers performing when sent TERM, ABRT or KILL

    def record(self, worker: Worker) -> None:
        """A worker the stop ended (reaped while the master was leaving)."""
        if worker.killed_for is not None:
            self.killed[worker.killed_for] += 1
        elif worker.stop_signal is Sig.QUIT:
            self.graceful += 1
        else:
            self.by_term += 1
        self.finished += worker.performs
        self.interrupted += worker.interrupted

    def line(self, exit_code: int, gave_up: str | None) -> str:
        """The report, for an exit with ``exit_code`` (``gave_up``: why, if it did)."""
        killed = sum(self.killed.values())
        reasons = ", ".join(f"{why} {self.killed[why]}" for why in KILL_REASONS
                            if self.killed[why])
        return (f"master stopped: {_count(self.graceful, 'worker')} stopped gracefully, "
                f"{self.by_term} stopped by TERM, {killed} killed"
                + (f" ({reasons})" if reasons else "")
                + f"; {_count(self.finished, 'perform')} finished, {self.interrupted} "
                f"interrupted; exit status {exit_code}"
                + (f"; gave up: {gave_up}" if gave_up else ""))
