"""The deadline of a worker whose master is gone: it stops, and in bounded time.

A worker that outlives its master stops gracefully, as on QUIT; but a perform that never
returns would keep it for ever, and nobody is left to send the KILL. So the worker
enforces ``graceful_timeout`` on itself, in three steps, each a backstop for the one
before:

1. at ``graceful_timeout``: INT to its own main thread, the quick stop: ``Shutdown`` is
   raised inside the perform (or passed on to the perform child), whose ``finally``
   blocks run, and the worker exits, KILLing its process group on the way out;
2. ``UNWIND_GRACE`` later, if it is still there: KILL to its whole process group;
3. ``KERNEL_GRACE`` after ``graceful_timeout``: a kernel timer (POSIX ``timer_create``
   with ``SIGEV_SIGNAL``) delivers SIGKILL to the worker by itself, with no Python code
   to run: for a perform stuck in C code that holds the interpreter. A perform child
   dies with it (it asked for KILL at its worker's death); a helper process the perform
   started outlives this last step alone.

Steps 1 and 2 run in a thread (``_thread``, not ``threading``: this starts from a signal
handler, which may have interrupted the job inside a ``threading`` lock), which needs the
interpreter only now and then: a perform sleeping or blocked in I/O lets it run. The
bound is ``graceful_timeout`` + 1 s after the worker noticed its master's death (the
parent-death signal: at once).
"""

from __future__ import annotations

import _thread
import contextlib
import ctypes
import os
import signal
import sys
import time
from collections.abc import Callable

UNWIND_GRACE = 0.5  # from the quick stop to the KILL of the group
KERNEL_GRACE = 0.8  # from graceful_timeout to the kernel's KILL of the worker

_CLOCK_MONOTONIC = 1
_SIGEV_SIGNAL = 0


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


class _Sigevent(ctypes.Structure):
    """Linux's ``struct sigevent`` (64 bytes): the value, the signal, how to notify."""

    _fields_ = [("sigev_value", ctypes.c_void_p), ("sigev_signo", ctypes.c_int),
                ("sigev_notify", ctypes.c_int), ("_pad", ctypes.c_int * 12)]


def _timer_functions() -> tuple[object, object] | None:
    """libc's ``timer_create`` and ``timer_settime`` (librt's before glibc 2.34)."""
    if not sys.platform.startswith("linux"):
        return None  # the struct layout above is Linux's
    for name in (None, "librt.so.1"):
        try:
            library = ctypes.CDLL(name, use_errno=True)
            return library.timer_create, library.timer_settime
        except (OSError, AttributeError):
            continue
    return None


def kill_me_in(seconds: float) -> bool:
    """Ask the kernel to SIGKILL this process in ``seconds``, whatever it does meanwhile.

    Returns whether it could (Linux; elsewhere there is no such backstop).
    """
    functions = _timer_functions()
    if functions is None:
        return False
    timer_create, timer_settime = functions
    event = _Sigevent(None, signal.SIGKILL, _SIGEV_SIGNAL)
    timer = ctypes.c_void_p()
    if timer_create(_CLOCK_MONOTONIC, ctypes.byref(event), ctypes.byref(timer)) != 0:  # type: ignore[operator]
        return False
    whole = int(seconds)
    when = _Itimerspec(_Timespec(0, 0), _Timespec(whole, int((seconds - whole) * 1e9)))
    return timer_settime(timer, 0, ctypes.byref(when), None) == 0  # type: ignore[operator]


def kill_group(worker: int) -> None:
    """KILL the process group of ``worker`` (itself, its perform child, their helpers),
    this process included; never returns.

    Only when ``worker`` leads the group this process is in, as every worker does (the
    master makes it so): a process that is not in a worker's group KILLs itself alone,
    and never the group of whoever started it.
    """
    if os.getpgrp() == worker:
        with contextlib.suppress(OSError):
            os.killpg(worker, signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)


def _enforce(graceful_timeout: float, main_thread: int, worker: int,
             say: Callable[[str], object]) -> None:
    time.sleep(graceful_timeout)
    with contextlib.suppress(Exception):
        say(f"graceful_timeout ({graceful_timeout:g}s) passed since the master's death: "
            "stopping now (Shutdown), then KILL to the process group")
    with contextlib.suppress(OSError):
        signal.pthread_kill(main_thread, signal.SIGINT)  # the quick stop: Shutdown
    time.sleep(UNWIND_GRACE)
    kill_group(worker)


def start_deadline(graceful_timeout: float, worker: int, say: Callable[[str], object]) -> None:
    """Bound the rest of worker ``worker``'s life (this process; see the module's
    docstring); ``say`` logs a line when the deadline passes. Call it once, from the main
    thread (a signal handler runs there)."""
    kill_me_in(graceful_timeout + KERNEL_GRACE)
    _thread.start_new_thread(_enforce, (graceful_timeout, _thread.get_ident(), worker, say))
