"""Stack dumps in a worker: where a timed-out perform hung, written to the log.

When a perform (or setup) runs past its hard ``timeout`` the master sends ABRT, and the
worker, or with the forking strategy its perform child, writes a clean dump to fd 2 and
KILLs its whole process group at once (``dump_and_kill_group``), so a timed-out worker
never starts another perform. Clean means what a reader needs and nothing else:

- a header naming the worker (group, slot, pid), the job, and how long it had been in
  its perform (or setup);
- the Python stack of each of the process's threads, most recent call first (the
  format of ``faulthandler``);
- none of the master's frames: a worker is a fork of the master, so its main thread's
  stack starts with the master's loop; the frames above the worker's entry point
  (``ENTRY_POINT``) are dropped;
- no "Fatal Python error: Aborted": that is ``faulthandler``'s way of dumping on a fatal
  signal, and nothing fatal happened. So ABRT gets a Python-level handler here, which
  formats ``sys._current_frames()``.

``faulthandler`` stays armed for the signals of a crash in C code (SIGSEGV, SIGBUS,
SIGFPE, SIGILL), where no Python handler could run. A perform stuck in C code never
runs the ABRT handler either; the master's KILL follows the ABRT and ends it.
"""

from __future__ import annotations

import faulthandler
import os
import sys
import threading
from types import CodeType, FrameType

from prefork.child.deadlines import kill_group

# the frames a fork inherited from the master end above this function's (set by runtime)
ENTRY_POINT: list[CodeType] = []


def arm_crash_dumps() -> None:
    """Make SIGSEGV, SIGBUS, SIGFPE, SIGILL (and ABRT, until the caller's own handler
    replaces it) dump every thread's Python stack to fd 2, from C."""
    faulthandler.enable(file=2, all_threads=True)


def own_frames(frame: FrameType | None) -> list[FrameType]:
    """``frame`` and its callers, outermost first, from the worker's entry point on."""
    frames: list[FrameType] = []
    while frame is not None:
        frames.append(frame)
        frame = frame.f_back
    frames.reverse()
    for index in range(len(frames) - 1, -1, -1):
        if frames[index].f_code in ENTRY_POINT:
            return frames[index:]
    return frames


def format_frames(frames: list[FrameType]) -> list[str]:
    """``frames`` (outermost first) as faulthandler writes them: most recent call first."""
    return [f'  File "{f.f_code.co_filename}", line {f.f_lineno} in {f.f_code.co_name}'
            for f in reversed(frames)]


def format_stacks(interrupted: FrameType | None) -> str:
    """Every thread's stack; this (main) thread's from ``interrupted``, the frame the
    signal handler interrupted, so that the handler itself is left out."""
    here = threading.get_ident()
    names = {thread.ident: thread.name for thread in threading.enumerate()}
    lines: list[str] = []
    for ident, top in sys._current_frames().items():
        frames = own_frames(interrupted if ident == here else top)
        title = "Current thread" if ident == here else "Thread"
        lines.append(f"{title} 0x{ident:x} ({names.get(ident, 'unknown')}), "
                     "most recent call first:")
        lines += format_frames(frames) or ["  <no Python frame>"]
        lines.append("")
    return "\n".join(lines)


def write_to_stderr(text: str) -> None:
    """Write ``text`` to fd 2 in as few system calls as it takes, bypassing Python's
    buffers (the process is about to be KILLed, and they would be lost)."""
    data = text.encode("utf-8", "replace")
    while data:
        try:
            written = os.write(2, data)
        except InterruptedError:
            continue
        except OSError:
            return
        data = data[written:]


def dump_and_kill_group(header: str, interrupted: FrameType | None, worker: int) -> None:
    """The end of a timed-out worker: the dump, then KILL to its whole process group.

    Never returns. The group is worker ``worker``'s, which it leads: the worker, its
    perform child, and what either forked (``deadlines.kill_group``).
    """
    try:
        write_to_stderr(f"{header}\n{format_stacks(interrupted)}")
    finally:
        kill_group(worker)
