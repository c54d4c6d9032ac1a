"""The double fork and its ready pipe, in a real launcher process.

Each test runs a small script as the launcher: it daemonizes, and the daemon does what
the test asks (say ready, say failed, die without a word), writing its pid and what it
sees to files first. The launcher's exit status and stderr are what an init script sees.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"

SCRIPT = """
import os, sys, time
from prefork.posix import daemon
out = sys.argv[1]
what = sys.argv[2]
pipe = daemon.daemonize()
with open(os.path.join(out, "daemon"), "w") as f:
    f.write(f"{os.getpid()} {os.getsid(0)} {os.getppid()}\\n")
    f.write(" ".join(os.readlink(f"/proc/self/fd/{fd}") for fd in (0, 1, 2)))
if what == "ready":
    if os.fork() == 0:  # a worker: must not hold the pipe
        time.sleep(3)
        os._exit(0)
    pipe.ready()
elif what == "failed":
    pipe.failed(2, "prefork: pidfile=x: is broken")
elif what == "silent":
    pass
os._exit(0)
"""


def _launch(tmp_path: Path, what: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(SRC))
    return subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path), what], env=env,
                          capture_output=True, text=True, timeout=20,
                          stdin=subprocess.DEVNULL)


def _daemon(tmp_path: Path) -> tuple[int, int, int, list[str]]:
    path = tmp_path / "daemon"
    deadline = time.monotonic() + 10
    while not (path.exists() and len(path.read_text().splitlines()) == 2):
        assert time.monotonic() < deadline, "the daemon never wrote its file"
        time.sleep(0.02)
    first, second = path.read_text().splitlines()
    pid, sid, ppid = map(int, first.split())
    return pid, sid, ppid, second.split()


def _gone(pid: int) -> None:
    deadline = time.monotonic() + 10
    while True:
        try:
            with open(f"/proc/{pid}/stat") as file:
                if file.read().rpartition(")")[2].split()[0] == "Z":
                    with_reaped(pid)
                    return
        except OSError:
            return
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            pytest.fail(f"daemon {pid} still runs")
        time.sleep(0.02)


def with_reaped(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def test_ready_exits_zero_and_the_daemon_is_detached(tmp_path: Path) -> None:
    done = _launch(tmp_path, "ready")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    pid, sid, _, stdio = _daemon(tmp_path)
    assert sid != pid, "not a session leader: it can never get a terminal back"
    assert sid != os.getsid(0), "out of the launcher's session"
    assert stdio == ["/dev/null"] * 3
    _gone(pid)


def test_failed_exits_with_the_code_and_the_masters_line(tmp_path: Path) -> None:
    done = _launch(tmp_path, "failed")
    assert done.returncode == 2
    assert done.stderr == "prefork: pidfile=x: is broken\n"
    _gone(_daemon(tmp_path)[0])


def test_a_daemon_that_dies_without_a_word_fails_the_launcher(tmp_path: Path) -> None:
    done = _launch(tmp_path, "silent")
    assert done.returncode == 1
    assert "exited before it was ready" in done.stderr
    _gone(_daemon(tmp_path)[0])
