"""Odds and ends of being a process: titles, the parent-death signal, pid files, logs.

Each helper does one system-level thing and degrades quietly where the platform lacks
it (no ``setproctitle`` installed, no ``prctl`` outside Linux): they make prefork nicer
to operate, never correct.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

try:  # an optional dependency: titles show in ps and top
    from setproctitle import setproctitle as _setproctitle
except ImportError:  # pragma: no cover - depends on the environment
    _setproctitle = None

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36


def set_title(text: str) -> None:
    """Set the process title shown by ps (a no-op without ``setproctitle``)."""
    if _setproctitle is not None:
        _setproctitle(text)


def has_controlling_terminal() -> bool:
    """Whether this process has a controlling terminal (where a resize sends WINCH)."""
    try:
        fd = os.open("/dev/tty", os.O_RDONLY | getattr(os, "O_NOCTTY", 0))
    except OSError:
        return False
    os.close(fd)
    return True


def _load_prctl() -> Callable[..., int] | None:
    """libc's ``prctl`` with typed arguments (Linux), resolved once at import.

    ``CDLL(None)`` finds the symbols already loaded, libc's among them (``find_library``
    would run ldconfig in a subprocess). Declared argument types spare each call the
    conversions that would otherwise touch, and copy, pages in every forked perform.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, *[ctypes.c_ulong] * 4]
    prctl.restype = ctypes.c_int
    return prctl


_PRCTL = _load_prctl()


def set_parent_death_signal(signo: int) -> bool:
    """Ask the kernel to send ``signo`` when our parent dies (Linux only).

    Returns whether it could; the caller must still check ``os.getppid()`` afterwards,
    since the parent may have died before the call.
    """
    return _PRCTL is not None and _PRCTL(PR_SET_PDEATHSIG, signo, 0, 0, 0) == 0


def set_child_subreaper() -> bool:
    """Become the reaper of orphaned descendants (Linux only; tests use it)."""
    return _PRCTL is not None and _PRCTL(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0


def write_pidfile(path: str, pid: int) -> None:
    """Write ``pid`` to ``path`` atomically (a reader never sees half a number)."""
    temporary = f"{path}.{pid}.tmp"
    with open(temporary, "w", encoding="ascii") as file:
        file.write(f"{pid}\n")
    os.replace(temporary, path)


def remove_pidfile(path: str, pid: int) -> None:
    """Remove ``path`` if it still names ``pid`` (a successor's file is left alone)."""
    try:
        with open(path, encoding="ascii") as file:
            if file.read().strip() != str(pid):
                return
        os.unlink(path)
    except OSError:
        pass


def read_pidfile(path: str) -> int | None:
    """The pid in ``path`` if that process is alive, else ``None``."""
    try:
        with open(path, encoding="ascii") as file:
            pid = int(file.read().strip())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    return pid


def redirect_output(log_file: str) -> None:
    """Point stdout and stderr (file descriptors 1 and 2) at ``log_file``, appending.

    Whatever writes there (tracebacks, faulthandler's stack dumps, a job's prints, the
    workers forked later) then lands in the log; reopening after logrotate is calling
    this again.
    """
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    fd = os.open(log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.dup2(fd, 1)
        os.dup2(fd, 2)
    finally:
        os.close(fd)


def reopen_log_handlers(logger: Any) -> int:
    """Reopen the files of ``logger``'s file handlers (and its ancestors'); how many.

    A handler created with ``delay=True`` and never used has no stream yet, and is left
    so.
    """
    reopened = 0
    current = logger if isinstance(logger, logging.Logger) else None
    while current is not None:
        for handler in current.handlers:
            if isinstance(handler, logging.FileHandler) and handler.stream is not None:
                handler.acquire()
                try:
                    handler.stream.close()
                    handler.stream = handler._open()
                    reopened += 1
                finally:
                    handler.release()
        current = current.parent if current.propagate else None
    return reopened


def flush_std_streams() -> None:
    """Flush Python's buffers before ``os._exit`` (which would drop them).

    Plain ``try`` rather than ``contextlib.suppress``: this runs in every forked perform,
    where each object made is a page copied.
    """
    for stream in (sys.stdout, sys.stderr):
        try:  # noqa: SIM105
            stream.flush()
        except Exception:  # closed, None or broken: nothing to save
            pass
