"""End-to-end fixtures: the real command, real processes, real signals.

``prefork_run(*args)`` starts ``python -m prefork run ARGS`` under pexpect (so the master
has a controlling terminal) or, with ``tty=False``, in a new session writing to a file
(no controlling terminal); both give an object with ``expect(regex)``.

Nothing may be left behind. This pytest process becomes a *child subreaper* (Linux), so
every orphaned descendant (a worker whose master died) is re-parented to it instead of
to init, and stays findable in /proc. After each test, every descendant must be gone
within a few seconds: stragglers are killed, by pid and only those (they are ours), and
the test fails. A session-wide check does the same at the end of the run.
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from e2e_support import Running, command_env, describe, kill_all, leftovers

# the leak checks read /proc and need PR_SET_CHILD_SUBREAPER: Linux only
collect_ignore_glob = [] if sys.platform.startswith("linux") else ["test_*.py"]


@pytest.fixture(scope="session", autouse=True)
def subreaper() -> Iterator[None]:
    """Become the reaper of our orphans, and check at the end that none is left."""
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.prctl(36, ctypes.c_ulong(1), 0, 0, 0) == 0, "PR_SET_CHILD_SUBREAPER failed"
    yield
    left = leftovers(5.0)
    if left:
        described = describe(left)
        kill_all(left)
        pytest.fail("processes left behind by the e2e session:\n" + described)


@pytest.fixture(autouse=True)
def nothing_left_behind() -> Iterator[None]:
    """Each test's processes must all be gone a few seconds after it ends."""
    yield
    left = leftovers(4.0)
    if left:
        described = describe(left)
        kill_all(left)
        pytest.fail("processes left behind:\n" + described)


@pytest.fixture
def prefork_run(tmp_path: Path) -> Iterator[Callable[..., Running]]:
    """Start ``prefork run ARGS``; every one started is stopped at teardown."""
    started: list[Running] = []

    def start(*args: str, tty: bool = True, timeout: float = 10.0, **env: str) -> Running:
        running = Running(list(args), tmp_path, command_env(tmp_path, **env), tty, timeout)
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()


