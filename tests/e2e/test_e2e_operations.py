"""Running it in production (issue 12): the pid file, the daemon and its ready pipe,
systemd's notifications; real processes, real sockets.

A daemon is not a child of the command that started it, but this test process is the
subreaper of everything it starts, so the daemon is still found in /proc, reaped here,
and checked for leftovers. Daemons are stopped by the pid their pid file names.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import signal
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_support import ROOT, alive, descendants, run_command, wait_for

pytestmark = pytest.mark.timeout(60)

WORKER_UP = r"worker group=\S+ slot=\d+ pid=(\d+) spawning -> (?:idle|performing)"


# --- the pid file -----------------------------------------------------------------------------

def test_the_pidfile_is_written_once_ready_locked_and_removed(tmp_path, prefork_run) -> None:
    pidfile = tmp_path / "master.pid"
    pool = prefork_run("jobs:Sleepy", "--workers", "2", "--pidfile", str(pidfile))
    pool.workers_up(2)
    assert pidfile.read_text() == f"{pool.pid}\n"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".master.pid")], \
        "no temporary file left next to it"

    second = run_command(tmp_path, "run", "jobs:Sleepy", "--pidfile", str(pidfile))
    assert second.returncode == 1, second.stderr
    assert second.stderr.splitlines() == [
        f"prefork: pidfile {pidfile} is held by a running master (pid {pool.pid})"]
    assert pidfile.read_text() == f"{pool.pid}\n", "the first master's file is untouched"
    assert alive(pool.pid)

    pool.kill("QUIT")
    assert pool.wait() == 0
    assert not pidfile.exists()


def test_a_stale_pidfile_is_taken_over_with_a_warning(tmp_path, prefork_run) -> None:
    pidfile = tmp_path / "master.pid"
    dead = _a_dead_pid()
    pidfile.write_text(f"{dead}\n")
    pool = prefork_run("jobs:Sleepy", "--pidfile", str(pidfile))
    pool.expect(rf"WARNING .*pidfile {re.escape(str(pidfile))}: names pid {dead}, which is "
                r"gone: taking it over")
    pool.workers_up(1)
    assert pidfile.read_text() == f"{pool.pid}\n"
    pool.kill("QUIT")
    assert pool.wait() == 0
    assert not pidfile.exists()


def test_a_pidfile_that_is_a_link_is_refused(tmp_path) -> None:
    target = tmp_path / "precious"
    target.write_text("keep me\n")
    pidfile = tmp_path / "master.pid"
    pidfile.symlink_to(target)
    done = run_command(tmp_path, "run", "jobs:Sleepy", "--pidfile", str(pidfile))
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"prefork: pidfile='{pidfile}': is a symbolic link, which a pid file must not be"]
    assert target.read_text() == "keep me\n"


# --- the daemon -------------------------------------------------------------------------------

@pytest.fixture
def daemons() -> Iterator[list[Path]]:
    """Pid files of daemons started by a test: each daemon is stopped at teardown (QUIT,
    then KILL of it and its workers), by the pid its file names."""
    pidfiles: list[Path] = []
    yield pidfiles
    for pidfile in pidfiles:
        with contextlib.suppress(OSError, ValueError):
            pid = int(pidfile.read_text())
            if alive(pid):
                workers = list(descendants(pid))
                os.kill(pid, signal.SIGQUIT)
                deadline = time.monotonic() + 10
                while alive(pid) and time.monotonic() < deadline:
                    time.sleep(0.05)
                for stray in [pid, *workers]:
                    with contextlib.suppress(ProcessLookupError):
                        if alive(stray):
                            os.kill(stray, signal.SIGKILL)


def test_a_daemon_returns_0_once_ready_and_runs_detached(tmp_path, daemons) -> None:
    pidfile, log = tmp_path / "master.pid", tmp_path / "master.log"
    daemons.append(pidfile)
    done = run_command(tmp_path, "run", "jobs:Sleepy", "--workers", "2", "-D",
                       "--pidfile", str(pidfile), "--log-file", str(log))
    assert done.returncode == 0, done.stderr
    assert done.stdout == "" and done.stderr == ""
    # ready means: the pid file is written and the workers are forked, before the exit
    pid = int(pidfile.read_text())
    assert alive(pid)
    assert os.getsid(pid) != os.getsid(0), "a session of its own"
    assert os.getsid(pid) != pid, "not a session leader: it can never take a terminal"
    assert len(descendants(pid)) >= 2, "its workers were forked before the launcher left"
    assert [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in (0, 1, 2)] == [
        os.devnull, str(log), str(log)]
    wait_for(lambda: len(re.findall(WORKER_UP, log.read_text())) >= 2, 10, "two workers up")

    os.kill(pid, signal.SIGQUIT)
    wait_for(lambda: not alive(pid), 15, "the daemon to stop")
    assert not pidfile.exists()
    assert "master draining -> stopped" in log.read_text()


def test_a_daemon_whose_job_does_not_import_fails_the_launcher(tmp_path) -> None:
    pidfile = tmp_path / "master.pid"
    done = run_command(tmp_path, "run", "no_such_module:Job", "--daemon",
                       "--pidfile", str(pidfile))
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "prefork: job='no_such_module:Job': cannot import no_such_module "
        "(No module named 'no_such_module')"]
    assert not pidfile.exists()
    # nothing left running: the fixture checks every descendant of this test


def test_a_daemon_that_fails_after_the_fork_gives_the_launcher_its_line(
        tmp_path, prefork_run) -> None:
    """The pid file is claimed in the daemon: its refusal crosses the ready pipe."""
    pidfile = tmp_path / "master.pid"
    first = prefork_run("jobs:Sleepy", "--pidfile", str(pidfile))
    first.workers_up(1)
    done = run_command(tmp_path, "run", "jobs:Sleepy", "-D", "--pidfile", str(pidfile))
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"prefork: pidfile {pidfile} is held by a running master (pid {first.pid})"]
    first.kill("QUIT")
    assert first.wait() == 0


def test_a_daemon_with_a_log_file_it_cannot_open_fails_with_status_2(tmp_path) -> None:
    log = tmp_path / "log-is-a-directory"
    log.mkdir()
    done = run_command(tmp_path, "run", "jobs:Sleepy", "-D", "--log-file", str(log))
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"prefork: log_file='{log}': cannot be opened (Is a directory)"]


# --- systemd ----------------------------------------------------------------------------------

class Listener:
    """The service manager's end: a datagram socket bound at a short path."""

    def __init__(self) -> None:
        self.directory = tempfile.mkdtemp(prefix="pfn-")  # sun_path holds 108 bytes
        self.path = os.path.join(self.directory, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.heard: list[tuple[float, str]] = []

    def until(self, predicate, timeout: float, what: str) -> str:  # type: ignore[no-untyped-def]
        """Read messages until one satisfies ``predicate``; it."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail(f"timed out waiting for {what}; heard: {self.heard}")
            self.sock.settimeout(left)
            try:
                message = self.sock.recv(4096).decode()
            except TimeoutError:
                continue
            self.heard.append((time.monotonic(), message))
            if predicate(message):
                return message

    def drain(self) -> None:
        """Read what is left (the master has exited)."""
        self.sock.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            while True:
                self.heard.append((time.monotonic(), self.sock.recv(4096).decode()))

    def close(self) -> None:
        self.sock.close()
        os.unlink(self.path)
        os.rmdir(self.directory)


@pytest.fixture
def listener() -> Iterator[Listener]:
    heard = Listener()
    yield heard
    heard.close()


def test_systemd_hears_ready_reloading_ready_stopping_and_the_watchdog(
        tmp_path, prefork_run, listener) -> None:
    pool = prefork_run("jobs:Sleepy", "--workers", "2", tty=False,
                       NOTIFY_SOCKET=listener.path, WATCHDOG_USEC="600000")
    listener.until(lambda m: m == "READY=1", 15, "READY=1")
    listener.until(lambda m: m == "STATUS=running: 2/2 workers", 15, "the status line")
    # the watchdog, at half of WATCHDOG_USEC, while the master has nothing else to do
    pings = [listener.until(lambda m: m == "WATCHDOG=1", 15, "a ping") for _ in range(3)]
    assert pings == ["WATCHDOG=1"] * 3
    times = [at for at, message in listener.heard if message == "WATCHDOG=1"]
    assert all(later - earlier >= 0.2 for earlier, later in itertools.pairwise(times)), \
        "never sooner than due (0.3 s apart)"

    before = time.monotonic()
    pool.kill("HUP")
    reloading = listener.until(lambda m: m.startswith("RELOADING=1"), 15, "RELOADING=1")
    after = time.monotonic()
    lines = reloading.splitlines()
    assert lines[0] == "RELOADING=1" and lines[1].startswith("MONOTONIC_USEC=")
    usec = int(lines[1].removeprefix("MONOTONIC_USEC="))
    assert before * 1e6 <= usec <= after * 1e6, "CLOCK_MONOTONIC, as systemd reads it"
    listener.until(lambda m: m == "READY=1", 15, "READY=1 once the reload is over")

    pool.kill("QUIT")
    listener.until(lambda m: m == "STOPPING=1", 15, "STOPPING=1")
    assert pool.wait() == 0
    listener.drain()
    said = [message for _, message in listener.heard if message != "WATCHDOG=1"
            and not message.startswith("STATUS=")]
    assert said == ["READY=1", lines[0] + "\n" + lines[1], "READY=1", "STOPPING=1"]
    statuses = [message for _, message in listener.heard if message.startswith("STATUS=")]
    assert statuses[0] == "STATUS=running: 2/2 workers"
    assert "STATUS=draining: 2 workers left" in statuses


def test_without_a_notify_socket_nothing_is_sent_and_nothing_wakes(
        tmp_path, prefork_run, listener) -> None:
    pool = prefork_run("jobs:Sleepy", tty=False, WATCHDOG_USEC="200000")
    pool.workers_up(1)
    pool.kill("QUIT")
    assert pool.wait() == 0
    listener.sock.setblocking(False)
    with pytest.raises(BlockingIOError):
        listener.sock.recv(4096)


def _a_dead_pid() -> int:
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os._exit(0)
    os.waitpid(pid, 0)
    return pid


# --- who and where ----------------------------------------------------------------------------

def _status(pid: int, field: str) -> str:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return line.split(":", 1)[1].split()[0]
    raise AssertionError(f"no {field} in /proc/{pid}/status")


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can switch the workers' user")
def test_workers_run_as_user_and_the_master_in_chdir_with_umask(tmp_path, prefork_run) -> None:
    import pwd

    job = tmp_path / "idle_job.py"
    job.write_text("import time\n\ndef perform():\n    time.sleep(0.1)\n")
    home = tmp_path / "home"
    home.mkdir()
    pool = prefork_run(f"{job}:perform", "--workers", "2", "--user", "nobody",
                       "--chdir", str(home), "--umask", "027", tty=False)
    pids = pool.workers_up(2)
    nobody = pwd.getpwnam("nobody")
    for pid in pids:
        assert _status(pid, "Uid") == str(nobody.pw_uid)
        assert _status(pid, "Gid") == str(nobody.pw_gid)
    assert _status(pool.pid, "Uid") == "0", "the master stays root"
    assert os.readlink(f"/proc/{pool.pid}/cwd") == str(home)
    assert _status(pool.pid, "Umask") == "0027"
    pool.kill("QUIT")
    assert pool.wait() == 0


def test_a_relative_config_file_with_chdir_is_refused(tmp_path) -> None:
    """HUP reads the file again after the chdir: a relative path would name another."""
    config = tmp_path / "prefork.toml"
    config.write_text('job = "jobs:Sleepy"\n')
    relative = os.path.relpath(config, ROOT)  # the command runs in ROOT
    done = run_command(tmp_path, "run", "-c", relative, "--chdir", "/")
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"prefork: config_file={relative!r}: must be an absolute path when chdir is set "
        "(HUP reads it again from there)"]
