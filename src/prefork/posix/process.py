"""Odds and ends of being a process: titles, the parent-death signal, logs, and the
descriptors a forked child must not keep (the pid file has a module of its own).

Each helper does one system-level thing and degrades quietly where the platform lacks
it (no ``setproctitle`` installed, no ``prctl`` outside Linux): they make prefork nicer
to operate, never correct.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
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


def _load_libc() -> Any:
    """The C library's symbols, through ``ctypes``, made cheap to call; None without.

    ``CDLL(None)`` finds the symbols already loaded, libc's among them (``find_library``
    would run ldconfig in a subprocess). Forked performs call two of them, ``prctl`` and
    ``sigaction``, and there each object made or touched is a page copied
    (copy-on-write), so the calls are as bare as ctypes allows (measured: about a third
    of the pages of a call with declared types):

    - ``PyDLL``: the GIL is kept, for calls that never block;
    - no ``argtypes``: declared types convert each argument through ``from_param``, an
      object per argument; undeclared, a Python int goes straight into a C ``int``
      (libffi widens it to the register, so a small non-negative value reads the same
      as the ``unsigned long`` prctl takes: every caller here passes those), and a
      ``byref`` made beforehand is passed as it is;
    - no ``use_errno``: nobody reads it, and it costs a lookup per call.
    """
    try:
        return ctypes.PyDLL(None)
    except OSError:  # pragma: no cover - depends on the platform
        return None


_LIBC = _load_libc()
_PRCTL: Callable[..., int] | None = (
    getattr(_LIBC, "prctl", None) if sys.platform.startswith("linux") else None
)
_SIGACTION: Callable[..., int] | None = getattr(_LIBC, "sigaction", None)
# room for a struct sigaction, which stays opaque (glibc's is 152 bytes, others' less)
_SIGACTION_BYTES = 512


def set_parent_death_signal(signo: int) -> bool:
    """Ask the kernel to send ``signo`` when our parent dies (Linux only).

    Returns whether it could; the caller must still check ``os.getppid()`` afterwards,
    since the parent may have died before the call.
    """
    return _PRCTL is not None and _PRCTL(PR_SET_PDEATHSIG, signo, 0, 0, 0) == 0


def _unavailable() -> int:
    return -1


def parent_death_signal_call(signo: int) -> Callable[[], int]:
    """``set_parent_death_signal(signo)`` made ready before a fork, for the child to call.

    It returns prctl's result (0 when it worked; -1 where there is no parent-death
    signal). A ``functools.partial`` over the C function, so that the child runs no
    Python frame to make the call: this is for every forked perform, where each page
    touched is a page copied.
    """
    if _PRCTL is None:
        return _unavailable
    return functools.partial(_PRCTL, PR_SET_PDEATHSIG, signo, 0, 0, 0)


def signal_disposition_call(signo: int) -> Callable[[], int] | None:
    """A call that puts back ``signo``'s disposition as it is now; None if out of reach.

    The disposition as the kernel holds it (handler, mask, flags), whoever installed it:
    so it can put back a handler that Python's ``signal`` module cannot name, such as
    faulthandler's, after ``signal.signal`` replaced it. libc's ``sigaction`` fills the
    struct and reads it back, unlooked-at. Made ready beforehand, like
    ``parent_death_signal_call``: the call is one system call and makes no object.
    """
    if _SIGACTION is None:
        return None
    saved = ctypes.create_string_buffer(_SIGACTION_BYTES)
    if _SIGACTION(signo, None, ctypes.byref(saved)) != 0:
        return None
    # byref() keeps ``saved`` alive, and the partial keeps the byref
    return functools.partial(_SIGACTION, signo, ctypes.byref(saved), None)


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


# --- descriptors a forked child must not keep -------------------------------------------------

_CLOSED_IN_CHILDREN: set[int] = set()
_AT_FORK_REGISTERED = False


def close_in_children(fd: int) -> None:
    """Close ``fd`` in every process forked from this one from now on (workers, perform
    children), while this process keeps it: a lock or a pipe that must end with this
    process, never outlive it in a child.

    ``os.register_at_fork`` runs in the child of every ``os.fork``, whoever calls it, so
    the owner of ``fd`` need not be told of each fork.
    """
    global _AT_FORK_REGISTERED
    if not _AT_FORK_REGISTERED:
        os.register_at_fork(after_in_child=_close_in_child)
        _AT_FORK_REGISTERED = True
    _CLOSED_IN_CHILDREN.add(fd)


def keep_in_children(fd: int) -> None:
    """Forget ``fd`` (its owner closed it): children leave that number alone."""
    _CLOSED_IN_CHILDREN.discard(fd)


def _close_in_child() -> None:
    if not _CLOSED_IN_CHILDREN:  # a perform child of a worker: nothing to do
        return
    for fd in _CLOSED_IN_CHILDREN:
        try:  # noqa: SIM105
            os.close(fd)
        except OSError:
            pass
    _CLOSED_IN_CHILDREN.clear()
