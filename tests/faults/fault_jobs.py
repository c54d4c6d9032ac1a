"""Jobs the fault battery runs with ``prefork run fault_jobs:NAME``.

Each leaves time-stamped markers in ``$PREFORK_E2E_DIR`` (the test's tmp dir): one line
``PID MONOTONIC [TEXT]`` per event, in a file named after the event and the worker's pid
(``starts.WORKER``, ``ends.WORKER``, ``setup.WORKER``...). PID is the process that wrote
the line: the worker itself, or the perform's child with the forking strategy. The clock
is ``CLOCK_MONOTONIC``, one clock for every process of the machine, so the test can
compare the stamps with its own ``time.monotonic()``.

``PERFORM_SECONDS`` sets how long a perform of ``Steady`` lasts.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import prefork

DIR = Path(os.environ.get("PREFORK_E2E_DIR", "."))
PERFORM_SECONDS = float(os.environ.get("PERFORM_SECONDS", "0.05"))


def stamp(name: str, text: str = "") -> None:
    """Append ``PID MONOTONIC TEXT`` to the marker file ``name``."""
    with open(DIR / name, "a", encoding="ascii") as file:
        file.write(f"{os.getpid()} {time.monotonic():.6f} {text}".rstrip() + "\n")


class Steady(prefork.Job):
    """Performs of PERFORM_SECONDS that say how they ended.

    ``ends`` only when the perform returned; ``interrupted`` names the exception that
    went through it (``Shutdown`` on a quick stop); ``finally`` whatever happened.
    """

    def setup(self) -> None:
        stamp(f"setup.{os.getpid()}", str(self.worker.slot))

    def perform(self) -> None:
        worker = self.worker.pid
        try:
            # inside the try: a test sees ``starts`` and may signal at once, before
            # this line's stamp has returned; the interruption is then still told
            stamp(f"starts.{worker}")
            time.sleep(PERFORM_SECONDS)
        except BaseException as error:
            stamp(f"interrupted.{worker}", type(error).__name__)
            raise
        finally:
            stamp(f"finally.{worker}")
        stamp(f"ends.{worker}")

    def teardown(self) -> None:
        stamp(f"teardown.{os.getpid()}")


def hang_here() -> None:
    """Never returns: the stack dump must name this function."""
    while True:
        time.sleep(0.05)


class Hang(prefork.Job):
    """A perform that never returns, with a helper process in the worker's group.

    The helper (``sleep``) shows whether a kill takes the whole process group: its pid
    is the third field of the ``starts`` line.
    """

    def setup(self) -> None:
        stamp(f"setup.{os.getpid()}")

    def perform(self) -> None:
        helper = subprocess.Popen(["sleep", "300"], stdin=subprocess.DEVNULL)
        stamp(f"starts.{self.worker.pid}", str(helper.pid))
        hang_here()


class HangingSetup(prefork.Job):
    def setup(self) -> None:
        stamp(f"setup.{os.getpid()}")
        hang_here()

    def perform(self) -> None:  # never reached
        raise AssertionError("perform after a hung setup")


class BadSetup(prefork.Job):
    def setup(self) -> None:
        stamp(f"setup.{os.getpid()}")
        raise RuntimeError("setup exploded on purpose")

    def perform(self) -> None:  # never reached
        raise AssertionError("perform after a failed setup")


class Raising(prefork.Job):
    """Every perform raises (a failed perform, with either strategy)."""

    def setup(self) -> None:
        stamp(f"setup.{os.getpid()}")

    def perform(self) -> None:
        stamp(f"starts.{self.worker.pid}")
        raise ValueError("perform exploded on purpose")


class Stubborn(prefork.Job):
    """A worker that ignores QUIT, TERM and INT: only KILL ends it."""

    def setup(self) -> None:
        for signo in (signal.SIGQUIT, signal.SIGTERM, signal.SIGINT):
            signal.signal(signo, signal.SIG_IGN)
        stamp(f"setup.{os.getpid()}")

    def perform(self) -> None:
        time.sleep(0.05)


class ExitZero(prefork.Job):
    """A worker that leaves on its own with status 0, in its first perform."""

    def setup(self) -> None:
        stamp(f"setup.{os.getpid()}")

    def perform(self) -> None:
        stamp(f"exits.{self.worker.pid}")
        sys.exit(0)
