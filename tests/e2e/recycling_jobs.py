"""Jobs for the recycling tests (``prefork run recycling_jobs:NAME``): they leave markers
in ``$PREFORK_E2E_DIR`` as ``jobs`` does (``setup.PID``, ``teardown.PID``, ``ends.PID``).

``Leaky`` keeps ``LEAK_MIB`` more MiB of its own after each perform (written, so the pages
are the worker's alone: its USS grows). ``Balloon``: the first worker to perform is stuck
inside one perform that grows ``LEAK_MIB`` every 0.2 s and never returns; every other
worker sets up slowly (``SLOW_SETUP`` seconds), so that the stuck one's replacement is not
ready before the master has sampled it twice.
"""

from __future__ import annotations

import os
import time

from jobs import DIR, mark

import prefork

LEAK_MIB = int(os.environ.get("LEAK_MIB", "4"))
PERFORM_SECONDS = float(os.environ.get("PERFORM_SECONDS", "0.02"))
SLOW_SETUP = float(os.environ.get("SLOW_SETUP", "8"))


def _hold(mib: int) -> bytes:
    return b"\x01" * (mib << 20)  # written, page by page: unique to this process


class Counted(prefork.Job):
    """A short perform, counted in ``ends.PID``."""

    def setup(self) -> None:
        mark(f"setup.{os.getpid()}", str(self.worker.slot))

    def perform(self) -> None:
        time.sleep(PERFORM_SECONDS)
        mark(f"ends.{os.getpid()}")

    def teardown(self) -> None:
        mark(f"teardown.{os.getpid()}")


class Leaky(Counted):
    """Each perform keeps LEAK_MIB more MiB for good."""

    def setup(self) -> None:
        super().setup()
        self.hoard: list[bytes] = []

    def perform(self) -> None:
        self.hoard.append(_hold(LEAK_MIB))
        super().perform()


class Balloon(Counted):
    """The first worker to perform grows inside one endless perform; the others set up
    slowly, then perform as ``Counted`` does."""

    def setup(self) -> None:
        super().setup()
        if (DIR / "ballooned").exists():
            time.sleep(SLOW_SETUP)

    def perform(self) -> None:
        try:
            with open(DIR / "ballooned", "x", encoding="ascii") as claim:
                claim.write(str(os.getpid()))
        except FileExistsError:
            super().perform()
            return
        hoard = []
        while True:  # stuck, and growing; stopping (QUIT) is never looked at
            hoard.append(_hold(LEAK_MIB))
            time.sleep(0.2)
