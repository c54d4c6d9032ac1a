"""The master's pid file: claimed at start, written when ready, locked for life.

Theory of operation
-------------------

A pid file says two things: which process is the master, and that one is running. The
second is what goes wrong with plain pid files: a master killed by KILL leaves its file
behind, and the pid in it may belong to a stranger by the time anyone reads it. So the
file is *locked* (``flock``) for as long as the master lives, and the kernel drops the
lock when the master dies, however it dies. A lock held means a master runs; a file
without a lock is stale, whatever pid it names.

- ``claim()`` (at start, before any worker is forked): open the file, creating it if need
  be, without following a symbolic link and without blocking on a FIFO, and lock it
  without waiting. Locked by someone else: ``PidFileInUse``, naming the holder's pid, and
  the file is left as it was. Not locked: the file is ours; a pid found in it is stale,
  said in a warning, and wiped at once so that nobody signals it. Between the open and
  the lock a departing master may have removed the file, or a starting one replaced it:
  the lock must be on the file that the path names *now*, so the claim checks the
  inode it locked against the path's and tries again when they differ.
- ``write(pid)`` (once the master is ready: its first workers forked): the pid goes into
  a new file next to it (``O_EXCL``, never an existing file or a link), which is locked,
  then renamed over the path. A reader sees the whole pid or no pid, never half of one;
  and the lock moves with the file, since the new one is locked before it is in place.
- ``release()`` (at a clean exit): the file is removed if the path still names the file
  this master locked (a successor's file is left alone), and the lock dropped.

Workers are forked from the master, and a forked child shares the master's open files,
locks included: a worker that outlived its master would keep the next master out. So
the descriptor is closed in every forked child (``process.close_in_children``).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import secrets
import stat
from typing import Any

from prefork.core.errors import ConfigError
from prefork.posix import process

_OPEN_FLAGS = (os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK
               | getattr(os, "O_CLOEXEC", 0))
_NEW_FLAGS = (os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
              | getattr(os, "O_CLOEXEC", 0))
_MODE = 0o644
# a path whose file is replaced between our open and our lock on every try is under a
# heavier siege than two masters starting at once
_ATTEMPTS = 16


class PidFileInUse(Exception):
    """Another running master holds the pid file (its lock): this one must not start."""


class PidFile:
    """The pid file at ``path``; warnings go to ``logger``."""

    def __init__(self, path: str, logger: Any) -> None:
        self.path = path
        self.logger = logger
        self.fd: int | None = None

    def claim(self) -> None:
        """Lock the file for this process, or raise ``PidFileInUse`` (another master
        holds it) or ``ConfigError`` (it cannot be a pid file: a link, a directory...)."""
        for _ in range(_ATTEMPTS):
            fd = self._open()
            if self._locked(fd) and self._still_at_path(fd):
                break
            os.close(fd)
        else:
            raise ConfigError("pidfile", self.path, "keeps being replaced while it is opened")
        self.fd = fd
        process.close_in_children(fd)
        stale = _read(fd)
        if stale:
            self.logger.warning(f"pidfile {self.path}: {_why_stale(stale)}: taking it over")
        os.ftruncate(fd, 0)

    def write(self, pid: int) -> None:
        """Put ``pid`` in the file, atomically, keeping the lock (see the module's doc)."""
        if self.fd is None:
            raise RuntimeError("write() before claim()")
        directory, name = os.path.split(os.path.abspath(self.path))
        temporary = os.path.join(directory, f".{name}.{secrets.token_hex(6)}")
        fd = os.open(temporary, _NEW_FLAGS, _MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a new file: nobody else has it
            os.write(fd, f"{pid}\n".encode("ascii"))
            os.replace(temporary, self.path)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
        old, self.fd = self.fd, fd
        process.close_in_children(fd)
        process.keep_in_children(old)
        os.close(old)

    def release(self) -> None:
        """Remove the file if it is still ours, and drop the lock."""
        fd, self.fd = self.fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            if _same_file(os.fstat(fd), os.lstat(self.path)):
                os.unlink(self.path)
        process.keep_in_children(fd)
        os.close(fd)

    # ---------------------------------------------------------------------------------------

    def _open(self) -> int:
        try:
            fd = os.open(self.path, _OPEN_FLAGS, _MODE)
        except OSError as error:
            if error.errno == errno.ELOOP:
                raise ConfigError("pidfile", self.path,
                                  "is a symbolic link, which a pid file must not be") from None
            raise ConfigError("pidfile", self.path,
                              f"cannot be opened ({error.strerror})") from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise ConfigError("pidfile", self.path, "is not a regular file")
        return fd

    def _locked(self, fd: int) -> bool:
        """Lock ``fd``; raise ``PidFileInUse`` if a live master holds it.

        False when the lock was taken but the file is no longer at the path (try again).
        """
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder, current = _read(fd), self._still_at_path(fd)
            os.close(fd)
            if not current:  # its master removed or replaced it as we opened it
                return False
            who = f"pid {holder}" if holder else "starting, no pid written yet"
            raise PidFileInUse(
                f"pidfile {self.path} is held by a running master ({who})") from None
        return True

    def _still_at_path(self, fd: int) -> bool:
        try:
            return _same_file(os.fstat(fd), os.lstat(self.path))
        except FileNotFoundError:
            return False


def _read(fd: int) -> str:
    return os.pread(fd, 64, 0).decode("ascii", "replace").strip()


def _same_file(one: os.stat_result, other: os.stat_result) -> bool:
    return (one.st_dev, one.st_ino) == (other.st_dev, other.st_ino)


def _why_stale(content: str) -> str:
    """Why an unlocked file's pid is stale, in words."""
    try:
        pid = int(content)
    except ValueError:
        return f"holds {content[:20]!r}, not a pid, and no master holds its lock"
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return f"names pid {pid}, which is gone"
    except PermissionError:
        pass
    return (f"names pid {pid}, which runs but holds no lock on it (not a prefork master, "
            "or a recycled pid)")

