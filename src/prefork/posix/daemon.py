"""Becoming a daemon, with a ready pipe: the launcher exits with the truth.

Theory of operation
-------------------

``daemonize()`` is the classic double fork. The *launcher* (the process an init script
or a person started) forks a child, which calls ``setsid`` to leave the launcher's
session and controlling terminal, and forks again: the *daemon*, which is not a session
leader and so can never acquire a terminal by opening one. The middle child exits at
once; the daemon's stdin, stdout and stderr go to ``/dev/null`` (the master's
``log_file``, if any, takes stdout and stderr over right after).

The launcher does not exit at once, as a bare double fork would: it waits on a pipe
(Unicorn's "ready pipe") for the daemon to say how its start went, and exits with that:

- ``ready`` once the master is ready (its first workers forked, its pid file written):
  the launcher exits 0, so that an init script that sees 0 knows the pool runs;
- ``failed CODE LINE`` when it could not start (the pid file is held by another master,
  the log file cannot be opened...): the launcher prints LINE, the master's own error
  line, and exits CODE;
- nothing at all (the daemon died before it could say): the launcher says so, and exits 1.

The pipe's write end is closed in every process the daemon forks (its workers): only the
daemon itself can say it is ready, and its death before it did is seen as an end of file.
"""

from __future__ import annotations

import contextlib
import os
import sys

from prefork.posix import process

READY = b"ready"
FAILED = b"failed"
EXIT_FAILED = 1
# a bound on what the launcher reads (one line of error): the daemon says little
_MESSAGE_LIMIT = 8192


class ReadyPipe:
    """The daemon's end of the ready pipe: say ``ready()`` or ``failed()``, once."""

    def __init__(self, fd: int | None) -> None:
        self.fd = fd
        if fd is not None:
            process.close_in_children(fd)

    @property
    def waiting(self) -> bool:
        """Whether a launcher still waits for the word."""
        return self.fd is not None

    def ready(self) -> None:
        self._say(READY)

    def failed(self, code: int, line: str) -> None:
        """Tell the launcher to print ``line`` and exit ``code`` (1 if ``code`` is 0)."""
        code = code or EXIT_FAILED
        self._say(FAILED + f" {code} {' '.join(line.splitlines())}".encode(errors="replace"))

    def _say(self, message: bytes) -> None:
        fd, self.fd = self.fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):  # the launcher is gone (killed): nobody to tell
            os.write(fd, message + b"\n")
        process.keep_in_children(fd)
        os.close(fd)


def daemonize() -> ReadyPipe:
    """Detach from the terminal and the launcher's session (double fork, ``setsid``).

    Returns in the daemon only, with the pipe on which to tell the launcher how the start
    went; the launcher waits for that word and exits (``os._exit``) with it, and the
    middle process exits at once. stdin, stdout and stderr of the daemon are
    ``/dev/null``.
    """
    process.flush_std_streams()
    read_fd, write_fd = os.pipe()
    launcher_child = os.fork()
    if launcher_child > 0:  # the launcher
        os.close(write_fd)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(launcher_child, 0)  # the middle process, which exits at once
        code = wait_for_word(read_fd)
        process.flush_std_streams()
        os._exit(code)
    os.close(read_fd)
    try:
        os.setsid()
        if os.fork() > 0:  # the middle process: leave the daemon to init
            os._exit(0)
        _null_stdio()
    except BaseException:
        # the launcher is waiting: give it the reason, whatever happened
        with contextlib.suppress(BaseException):
            error = sys.exc_info()[1]
            ReadyPipe(write_fd).failed(EXIT_FAILED, f"prefork: cannot daemonize: {error}")
        os._exit(EXIT_FAILED)
    return ReadyPipe(write_fd)


def wait_for_word(read_fd: int) -> int:
    """In the launcher: wait for the daemon's word on ``read_fd``; print an error line
    to stderr if it failed; return the exit status to exit with."""
    data = b""
    try:
        while b"\n" not in data and len(data) < _MESSAGE_LIMIT:
            try:
                chunk = os.read(read_fd, _MESSAGE_LIMIT)
            except InterruptedError:  # pragma: no cover - PEP 475 retries it
                continue
            if not chunk:
                break
            data += chunk
    finally:
        os.close(read_fd)
    word, _, rest = data.partition(b"\n")[0].partition(b" ")
    if word == READY:
        return 0
    if word == FAILED:
        code_text, _, line = rest.partition(b" ")
        print(line.decode(errors="replace"), file=sys.stderr)
        return int(code_text) if code_text.isdigit() and int(code_text) else EXIT_FAILED
    print("prefork: the master exited before it was ready (see its log file)",
          file=sys.stderr)
    return EXIT_FAILED


def _null_stdio() -> None:
    """stdin, stdout and stderr to ``/dev/null``."""
    process.flush_std_streams()
    fd = os.open(os.devnull, os.O_RDWR)
    try:
        for target in (0, 1, 2):
            os.dup2(fd, target)
    finally:
        if fd > 2:
            os.close(fd)
