"""Jobs the end-to-end tests run with ``prefork run jobs:NAME``.

They leave markers in ``$PREFORK_E2E_DIR`` (a test's tmp dir) for the test to read:
``setup.PID``, ``teardown.PID``, and one line per perform start/end in
``starts.PID``/``ends.PID`` (PID is the worker's, the line is the perform's own pid).
``PERFORM_SECONDS`` sets how long a ``Sleepy`` perform lasts.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import prefork

DIR = Path(os.environ.get("PREFORK_E2E_DIR", "."))
PERFORM_SECONDS = float(os.environ.get("PERFORM_SECONDS", "0.05"))
PRINT_PERFORMS = bool(os.environ.get("PRINT_PERFORMS"))


def mark(name: str, text: str = "") -> None:
    """Append one line to the marker file ``name``."""
    with open(DIR / name, "a", encoding="ascii") as file:
        file.write(f"{text or os.getpid()}\n")


class Sleepy(prefork.Job):
    """Each perform sleeps PERFORM_SECONDS, with markers at its start and end."""

    def setup(self) -> None:
        mark(f"setup.{os.getpid()}", str(self.worker.slot))

    def perform(self) -> None:
        worker = self.worker.pid
        mark(f"starts.{worker}", str(os.getpid()))
        if PRINT_PERFORMS:
            print(f"perform by pid={os.getpid()}", flush=True)
        time.sleep(PERFORM_SECONDS)
        mark(f"ends.{worker}", str(os.getpid()))

    def teardown(self) -> None:
        mark(f"teardown.{os.getpid()}")


def hang_here() -> None:
    """Never returns: the stack dump must name this function."""
    while True:
        time.sleep(0.05)


class Hang(prefork.Job):
    def setup(self) -> None:
        mark(f"setup.{os.getpid()}")

    def perform(self) -> None:
        mark(f"starts.{self.worker.pid}", str(os.getpid()))
        hang_here()


class Beating(prefork.Job):
    """A perform three times as long as ``timeout``, kept alive by heartbeats."""

    def setup(self) -> None:
        mark(f"setup.{os.getpid()}")

    def perform(self) -> None:
        mark(f"starts.{self.worker.pid}", str(os.getpid()))
        end = time.monotonic() + 2.5
        while time.monotonic() < end:
            time.sleep(0.1)
            self.worker.heartbeat()
        mark(f"ends.{self.worker.pid}", str(os.getpid()))


def poll_stopping(worker: prefork.WorkerContext) -> None:
    """preforker's ``while master.wants_me_alive?``: one perform that loops until asked."""
    mark(f"loop-start.{worker.pid}")
    while not worker.stopping:
        time.sleep(0.02)
    mark(f"loop-end.{worker.pid}")


def plain_perform() -> None:
    """A function without argument is a perform."""
    mark(f"plain.{os.getpid()}")
    time.sleep(0.05)


class BadSetup(prefork.Job):
    def setup(self) -> None:
        mark(f"setup.{os.getpid()}")
        raise RuntimeError("setup exploded on purpose")

    def perform(self) -> None:  # never reached
        raise AssertionError("perform after a failed setup")


class Crashy(prefork.Job):
    """Every other perform raises."""

    count = 0

    def setup(self) -> None:
        mark(f"setup.{os.getpid()}")

    def perform(self) -> None:
        mark(f"starts.{self.worker.pid}", str(os.getpid()))
        time.sleep(0.05)
        Crashy.count += 1
        if os.environ.get("CRASH_ALWAYS") or Crashy.count % 2 == 0:
            raise ValueError("perform exploded on purpose")
        mark(f"ends.{self.worker.pid}", str(os.getpid()))


class SlowSetup(prefork.Job):
    """A setup that takes SETUP_SECONDS (default 3), then performs as Sleepy does."""

    def setup(self) -> None:
        time.sleep(float(os.environ.get("SETUP_SECONDS", "3")))
        mark(f"setup.{os.getpid()}", str(self.worker.slot))

    def perform(self) -> None:
        time.sleep(PERFORM_SECONDS)
