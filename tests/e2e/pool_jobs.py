"""Jobs the pools tests name in their config files (``pool_jobs:Tagged('mail')``).

Besides ``jobs.Sleepy``'s markers, a ``Tagged`` worker appends ``PID GROUP SLOT`` to
``pool.TAG`` at setup, so a test can tell which pool's job each worker runs.
"""

from __future__ import annotations

import os

from jobs import Sleepy, mark


class Tagged(Sleepy):
    """A ``Sleepy`` that says which job it is: ``Tagged('mail')``."""

    def __init__(self, tag: str) -> None:
        self.tag = tag

    def setup(self) -> None:
        super().setup()
        mark(f"pool.{self.tag}", f"{os.getpid()} {self.worker.group} {self.worker.slot}")
