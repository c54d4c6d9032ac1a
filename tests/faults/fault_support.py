"""Helpers of the fault battery, beside the end-to-end ones it imports (e2e_support).

Waiting is always on a condition with a deadline (``wait_for``); a deadline that stands
for one of issue 10's bounds gets ``LOADED_MARGIN`` on top, never less.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path

from e2e_support import E2E, SRC, STARTED, Running, alive, descendants, kill_all

FAULTS = Path(__file__).resolve().parent

# What a loaded machine (the battery beside a CPU hog, on 2 cores) adds to a bound of
# issue 10 before the test calls it broken: scheduling delays of the master, of the
# workers and of this test's polling, each up to a few hundred milliseconds under load.
LOADED_MARGIN = 1.5

# Log timestamps have millisecond resolution: intervals read from them may be short by
# this much (and a process may stamp a hair before the master's clock said "due").
STAMP_SLACK = 0.01


def fault_pythonpath() -> str:
    """The jobs' ``PYTHONPATH``: prefork's source, the e2e jobs, the fault jobs."""
    return os.pathsep.join(
        filter(None, [str(SRC), str(E2E), str(FAULTS), os.environ.get("PYTHONPATH")])
    )


# --- markers and the log -------------------------------------------------------------------

def stamps(pool: Running, name: str) -> list[tuple[int, float, str]]:
    """The lines of marker ``name`` (fault_jobs.stamp): (pid, monotonic time, text)."""
    result = []
    for line in pool.marker_lines(name):
        pid, when, *text = line.split(" ", 2)
        result.append((int(pid), float(when), text[0] if text else ""))
    return result


def stamped(pool: Running, prefix: str) -> list[tuple[int, float, str]]:
    """Every line of every marker named ``prefix.*``, in time order."""
    lines = []
    for path in pool.tmp_path.glob(f"{prefix}.*"):
        lines.extend(stamps(pool, path.name))
    return sorted(lines, key=lambda line: line[1])


def intervals(times: Iterable[float]) -> list[float]:
    """The gaps between successive ``times``."""
    return [later - earlier for earlier, later in itertools.pairwise(times)]


# not anchored at the start of a line: a worker's stack dump, written in pieces to the
# same file, may come just before a master's line with no newline between
LOG_LINE = re.compile(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) (\w+) \[(\d+)\] (.*)$", re.M)


def log_entries(text: str, pattern: str) -> list[tuple[float, str, int, re.Match[str]]]:
    """Log lines whose message matches ``pattern``: (time, level, pid, match), in order.

    The time is the line's timestamp in seconds (wall clock, millisecond resolution).
    """
    compiled = re.compile(pattern)
    found = []
    for line in LOG_LINE.finditer(text):
        match = compiled.search(line.group(4))
        if match:
            when = datetime.strptime(line.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
            found.append((when, line.group(2), int(line.group(3)), match))
    return found


# --- processes -----------------------------------------------------------------------------

def gone(pids: Iterable[int]) -> bool:
    return not any(alive(pid) for pid in pids)


def kill_pids(pids: Iterable[int]) -> None:
    """SIGKILL those of ``pids`` still alive (only ever pids this test started)."""
    kill_all({pid: "" for pid in set(pids) if alive(pid)})


def kill_pool(pool: Running, pids: Iterable[int] = ()) -> None:
    """KILL the pool's master, then every process it left (and ``pids``).

    Once the master is dead its workers, and whatever they forked, are orphans of this
    process (the subreaper): they are all this test's own. The commands this session
    started itself (``STARTED``: masters, tracers) are left to their owners.
    """
    if pool.exit_status is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pool.pid, signal.SIGKILL)
    for _ in range(3):  # a worker may fork between two looks: look again
        doomed = set(pids) | {pid for pid in descendants() if pid not in STARTED}
        kill_pids(doomed)


@contextlib.contextmanager
def cleaned_up_on_failure(pool: Running, pids: set[int]) -> Iterator[None]:
    """If the block fails, KILL the pool (``kill_pool``), ``pids`` too (the block may grow it).

    An expected failure must not leave processes for the leak check to find (that would
    be an error in the teardown, which ``xfail`` does not cover).
    """
    try:
        yield
    except BaseException:
        kill_pool(pool, pids)
        raise


def proc_status(pid: int) -> dict[str, str]:
    """/proc/PID/status as a dict (empty once the process is gone)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as file:
            lines = file.read().splitlines()
    except OSError:
        return {}
    return dict(line.split(":\t", 1) for line in lines if ":\t" in line)


def proc_state(pid: int) -> str:
    return proc_status(pid).get("State", "?").split()[0]


def signal_pending(pid: int, signo: int) -> bool:
    """Whether ``signo`` waits, undelivered, for process ``pid`` (or any of its threads)."""
    status = proc_status(pid)
    bit = 1 << (signo - 1)
    return any(int(status.get(field, "0"), 16) & bit for field in ("ShdPnd", "SigPnd"))


def context_switches(pid: int) -> int:
    """How many times ``pid`` has been switched out, voluntarily or not."""
    status = proc_status(pid)
    return int(status["voluntary_ctxt_switches"]) + int(status["nonvoluntary_ctxt_switches"])


# --- an honest fork failure ----------------------------------------------------------------

FORK_SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

/* fork() fails with EAGAIN while the file $FAULT_FORK_GATE exists, in the one process
   whose parent is $FAULT_FORK_PARENT (the master; its workers fork freely), and writes
   the CLOCK_MONOTONIC time of each refused attempt to $FAULT_FORK_LOG. */
pid_t fork(void) {
    static pid_t (*real_fork)(void);
    const char *parent = getenv("FAULT_FORK_PARENT");
    const char *gate = getenv("FAULT_FORK_GATE");
    const char *log = getenv("FAULT_FORK_LOG");
    if (parent && gate && atol(parent) == (long)getppid() && access(gate, F_OK) == 0) {
        if (log) {
            struct timespec now;
            clock_gettime(CLOCK_MONOTONIC, &now);
            int fd = open(log, O_WRONLY | O_APPEND | O_CREAT, 0644);
            if (fd >= 0) {
                dprintf(fd, "%lld.%09ld\n", (long long)now.tv_sec, now.tv_nsec);
                close(fd);
            }
        }
        errno = EAGAIN;
        return -1;
    }
    if (!real_fork)
        real_fork = (pid_t (*)(void))dlsym(RTLD_NEXT, "fork");
    return real_fork();
}
"""


def c_compiler() -> str | None:
    return next(filter(None, map(shutil.which, ("cc", "gcc", "clang"))), None)


def build_fork_shim(directory: Path) -> Path:
    """Compile the LD_PRELOAD shim that makes ``fork`` fail on demand; its path."""
    compiler = c_compiler()
    assert compiler is not None
    source = directory / "fork_shim.c"
    source.write_text(FORK_SHIM)
    library = directory / "fork_shim.so"
    subprocess.run([compiler, "-shared", "-fPIC", "-O2", "-o", str(library), str(source),
                    "-ldl"], check=True, capture_output=True, timeout=60)
    return library


def wait_for_lines(path: Path, n: int, timeout: float) -> list[str]:
    """Wait until file ``path`` has at least ``n`` lines; its lines (maybe fewer)."""
    deadline = time.monotonic() + timeout
    while True:
        lines = path.read_text().splitlines() if path.exists() else []
        if len(lines) >= n or time.monotonic() > deadline:
            return lines
        time.sleep(0.02)
