"""Stack dumps in a worker: where a timed-out perform hung, written to the log.

The master sends ABRT when a timeout expires, and KILL after ``kill_timeout``; between
the two, the worker (or, with the forking strategy, its perform child) dumps every
thread's Python stack to fd 2 with ``faulthandler``, from C, so that even a worker stuck
in C code shows where.
"""

from __future__ import annotations

import faulthandler
from types import FrameType


def arm_stack_dumps() -> None:
    """Make ABRT (and SIGSEGV, SIGBUS...) dump every thread's Python stack to fd 2.

    ``faulthandler.register`` refuses SIGABRT, so this uses ``faulthandler.enable``,
    whose handler dumps the stacks from C (so even a worker stuck in C code shows where)
    and then re-raises the signal with the handler that was there before. When that is
    a Python handler (``signal.signal(SIGABRT, ...)`` must come first), the re-raise
    only flags it, and the process goes on: a timed-out worker dumps its stack and keeps
    running until the KILL that follows. The dump opens with faulthandler's own words,
    "Fatal Python error: Aborted", though nothing fatal happened. A genuine ``abort()``
    still kills the process (libc re-raises with the default action).
    """
    faulthandler.enable(file=2, all_threads=True)


def rearm_stack_dumps() -> None:
    """faulthandler disarms a signal after one dump: arm it again for the next ABRT."""
    faulthandler.disable()
    faulthandler.enable(file=2, all_threads=True)


def rearm_after_abort(signo: int, frame: FrameType | None) -> None:
    """The Python-level ABRT handler: the stack is dumped already; be ready for more."""
    rearm_stack_dumps()
