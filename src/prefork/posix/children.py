"""Child processes: fork, a pidfd per child, reaping, and signals that cannot go astray.

Why pidfds: a pid is only a number, and once a child is reaped the kernel may give that
number to a stranger; a signal sent "to the worker" a moment too late would hit it. A
pidfd (Linux 5.3+) names one process for good: ``pidfd_send_signal`` on a pidfd whose
process is gone fails instead of hitting anyone, and the pidfd becomes readable when the
process exits, so the master's ``poll`` wakes on each exit without SIGCHLD races.
Where pidfds are missing (macOS) the adapter falls back to ``kill`` and to SIGCHLD on
the self-pipe; it never signals a pid it has reaped.

Reaping is a ``waitpid(-1, WNOHANG)`` loop that reports every child, including ones the
core never spawned (the core answers those with a row); an embedding program that wants
to keep its own children's exit statuses uses the per-pid mode instead.

Each worker leads its own process group (``setpgid`` on both sides of the fork, so it
holds whichever side runs first), so a ``KILL`` goes to the group: a hung worker dies
with everything it forked.

Forking is split in two: ``fork`` does only the fork, and ``adopt`` does the parent's
share (its ``setpgid``, the pidfd, the record), so that a master forking a whole pool
adopts the children after its last fork instead of between two forks. Between two forks
every page the master writes is copied (each fork shares them all again with a new
child), and a page written per fork is a page copied per fork; adopting in a batch
writes them once. Nothing can go astray in between: no child is reaped or signalled
before it is adopted, since both happen only in the loop's later turns.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import traceback
from collections.abc import Callable

from prefork.posix.process import flush_std_streams

HAVE_PIDFD = hasattr(os, "pidfd_open") and hasattr(signal, "pidfd_send_signal")


def exit_status(status: int) -> int:
    """``waitpid``'s status as ``ChildExited`` wants it: exit code, or minus the signal."""
    return os.waitstatus_to_exitcode(status)


class Child:
    """A process we forked and have not reaped.

    A plain class, not a dataclass: nothing compares children, and a dataclass costs
    ~0.3 ms to make at import, on every start of a master.
    """

    __slots__ = ("pid", "pidfd")

    def __init__(self, pid: int, pidfd: int | None) -> None:
        self.pid = pid
        self.pidfd = pidfd

    def __repr__(self) -> str:
        return f"Child(pid={self.pid!r}, pidfd={self.pidfd!r})"


class Children:
    """The processes the master forked: their pidfds, reaping and signalling.

    ``use_pidfd=None`` means "if the kernel has them".
    """

    def __init__(self, use_pidfd: bool | None = None) -> None:
        self.use_pidfd = HAVE_PIDFD if use_pidfd is None else (use_pidfd and HAVE_PIDFD)
        self.live: dict[int, Child] = {}

    def fork(self, child_main: Callable[[], int]) -> int:
        """Fork; the child runs ``child_main`` and ``os._exit``s with what it returns.

        Raises ``OSError`` when the fork fails. The child never returns from here: no
        ``finally`` block or ``atexit`` handler of the parent's stack runs in it. The
        parent must ``adopt`` the pid before it reaps or signals anything.
        """
        pid = os.fork()
        if pid == 0:  # the child: plain try, as each object it makes is a page copied
            code = 1
            try:
                try:  # noqa: SIM105
                    os.setpgid(0, 0)
                except OSError:
                    pass
                code = child_main()
            except SystemExit as exit_:
                code = exit_.code if isinstance(exit_.code, int) else 1
            except BaseException:
                with contextlib.suppress(Exception):
                    traceback.print_exc(file=sys.stderr)
            finally:
                flush_std_streams()
                os._exit(code)
        return pid

    def adopt(self, pid: int) -> Child:
        """The parent's share of forking ``pid``: its process group, its pidfd, its record.

        The child is not reaped yet (only ``reap`` reaps), so its pid is still its own:
        a child that has exited already is a zombie, whose pidfd opens and is readable.
        """
        with contextlib.suppress(OSError):  # EACCES/ESRCH: the child got there first
            os.setpgid(pid, pid)
        child = self.live[pid] = Child(pid, self._open_pidfd(pid))
        return child

    def _open_pidfd(self, pid: int) -> int | None:
        if not self.use_pidfd:
            return None
        try:
            return os.pidfd_open(pid)
        except OSError:  # ENOSYS on an old kernel: fall back for good
            self.use_pidfd = False
            return None

    def kill(self, pid: int, signo: int, *, group: bool = False) -> bool:
        """Send ``signo`` to child ``pid`` (and its process group); False if it is gone.

        Only children we forked and have not reaped are ever signalled.
        """
        child = self.live.get(pid)
        if child is None:
            return False
        sent = True
        try:
            if child.pidfd is not None:
                signal.pidfd_send_signal(child.pidfd, signo)
            else:
                os.kill(pid, signo)
        except ProcessLookupError:
            sent = False
        if group:
            # safe: the pid is not reaped, so its number (the group's id) is not reused
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signo)
        return sent

    def reap(self, *, strays: bool = True) -> list[tuple[int, int]]:
        """Every child that has exited, as (pid, status), without blocking.

        With ``strays`` it is ``waitpid(-1)``: children someone else forked are reaped
        too. Without, only our own pids are waited for. The caller ``forget``s each
        reaped pid of ours once it has stopped polling its pidfd.
        """
        reaped: list[tuple[int, int]] = []
        if strays:
            while True:
                try:
                    pid, status = os.waitpid(-1, os.WNOHANG)
                except ChildProcessError:
                    break
                if pid == 0:
                    break
                reaped.append((pid, exit_status(status)))
        else:
            for pid in list(self.live):
                try:
                    done, status = os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:  # someone else reaped it: we will never know
                    reaped.append((pid, 0))
                    continue
                if done:
                    reaped.append((done, exit_status(status)))
        return reaped

    def forget(self, pid: int) -> None:
        """A reaped child: close its pidfd (after the caller stopped polling it)."""
        child = self.live.pop(pid, None)
        if child is not None and child.pidfd is not None:
            with contextlib.suppress(OSError):
                os.close(child.pidfd)

    def close_in_child(self) -> None:
        """In a freshly forked process: drop the parent's pidfds.

        A run of consecutive descriptors at a time (``close_range``, one system call
        where the kernel has it), not one ``close`` each: the kernel hands out the
        lowest free descriptor, so a master's pidfds lie mostly side by side, and a new
        worker of a pool of 1024 made a thousand calls before its setup."""
        for first, last in _runs(sorted(
                child.pidfd for child in self.live.values() if child.pidfd is not None)):
            os.closerange(first, last + 1)  # errors ignored, as close_range does
        self.live.clear()


def _runs(numbers: list[int]) -> list[tuple[int, int]]:
    """``[3, 4, 5, 9, 10]`` -> ``[(3, 5), (9, 10)]``: sorted numbers as inclusive runs."""
    runs: list[tuple[int, int]] = []
    for number in numbers:
        if runs and number == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], number)
        else:
            runs.append((number, number))
    return runs
