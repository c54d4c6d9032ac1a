"""RQ pools against a real Redis server: Debian's ``redis-server``, started here.

One server for the session, on a free loopback port in a temporary directory, with no
persistence (``--save '' --appendonly no``), emptied before each test; the outage test
starts its own, which it stops and starts again. Never skipped: CI installs
``redis-server`` (``.ci/run``), and a missing one fails the session.

Pools run as ``python rq_pool.py ...`` (``prefork.Master`` with an ``RQJob`` and its
``on_worker_exit`` hook) in new sessions, their log in a file. This process becomes a
child subreaper (Linux), so a worker orphaned by a test is re-parented here and found:
after each test every descendant must be gone; stragglers are killed (they are ours)
and the test fails.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

HERE = Path(__file__).resolve().parent
SRC = HERE.parents[1] / "src"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class RedisServer:
    """A ``redis-server`` of our own: ``start()``, ``stop(save=...)``, ``url``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is not installed (apt-get install -y redis-server)"
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.directory), "--daemonize", "no",
             "--logfile", str(self.directory / "redis.log")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 10
        while True:
            try:
                if client.ping():
                    break
            except redis.ConnectionError:
                pass
            assert self.process.poll() is None, "redis-server exited at start"
            assert time.monotonic() < deadline, "redis-server did not answer in 10 s"
            time.sleep(0.02)
        client.close()

    def stop(self, save: bool = False) -> None:
        """Stop it (with ``save``: write its data to disk first, for the next start)."""
        if self.process is None:
            return
        if save:
            with contextlib.suppress(redis.ConnectionError):
                redis.Redis.from_url(self.url).shutdown(save=True)
        else:
            self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        self.process = None


@pytest.fixture(scope="session", autouse=True)
def subreaper() -> Iterator[None]:
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.prctl(36, ctypes.c_ulong(1), 0, 0, 0) == 0, "PR_SET_CHILD_SUBREAPER failed"
    yield


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    with tempfile.TemporaryDirectory(prefix="prefork-rq-") as directory:
        server = RedisServer(Path(directory))
        server.start()
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture
def fresh_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A server of this test's own (to stop and start again)."""
    (tmp_path / "redis").mkdir()
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def connection(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    yield client
    client.close()


# --- processes ------------------------------------------------------------------------------

def descendants() -> dict[int, str]:
    """Every live descendant of this process: pid -> command line."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as file:
                fields = file.read().rpartition(")")[2].split()
        except OSError:
            continue
        if fields[0] == "Z":
            with contextlib.suppress(ChildProcessError):
                os.waitpid(int(entry), os.WNOHANG)  # an orphan of ours: reaped
            continue
        parents.setdefault(int(fields[1]), []).append(int(entry))
    found: dict[int, str] = {}
    todo = list(parents.get(os.getpid(), []))
    while todo:
        pid = todo.pop()
        try:
            found[pid] = Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")
        except OSError:
            continue
        todo.extend(parents.get(pid, []))
    return found


def leftovers(keep: set[int], timeout: float) -> dict[int, str]:
    deadline = time.monotonic() + timeout
    while True:
        left = {pid: cmd for pid, cmd in descendants().items() if pid not in keep}
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


@pytest.fixture(autouse=True)
def nothing_left_behind(redis_server: RedisServer) -> Iterator[None]:
    keep = set(descendants())  # the session's redis-server
    yield
    left = leftovers(keep, 5.0)
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if left:
        pytest.fail("processes left behind: " + "; ".join(f"{p}: {c}" for p, c in left.items()))


class Pool:
    """A running ``rq_pool.py`` (a prefork master of RQ workers); its log in a file."""

    def __init__(self, args: list[str], log: Path) -> None:
        self.log_path = log
        self.log_file = open(log, "wb")  # noqa: SIM115
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), str(HERE),
                                                          env.get("PYTHONPATH")]))
        self.process = subprocess.Popen(
            [sys.executable, str(HERE / "rq_pool.py"), *args], stdin=subprocess.DEVNULL,
            stdout=self.log_file, stderr=subprocess.STDOUT, env=env,
            start_new_session=True)
        self.pid = self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def expect(self, pattern: str, timeout: float = 10.0) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        compiled = re.compile(pattern)
        while True:
            match = compiled.search(self.log())
            if match:
                return match
            if time.monotonic() > deadline:
                pytest.fail(f"timed out waiting for {pattern!r}; log:\n{self.log()[-4000:]}")
            if self.process.poll() is not None:
                pytest.fail(f"the pool exited ({self.process.returncode}) before "
                            f"{pattern!r}; log:\n{self.log()[-4000:]}")
            time.sleep(0.02)

    def workers(self, n: int, timeout: float = 10.0) -> list[int]:
        """The pids of the first ``n`` RQ workers to listen."""
        deadline = time.monotonic() + timeout
        while True:
            pids = [int(p) for p in re.findall(r"rq worker \S+\.(\d+): listening", self.log())]
            if len(pids) >= n:
                return pids[:n]
            if time.monotonic() > deadline or self.process.poll() is not None:
                pytest.fail(f"{len(pids)} of {n} workers up; log:\n{self.log()[-4000:]}")
            time.sleep(0.02)

    def signal(self, signo: int) -> None:
        os.kill(self.pid, signo)

    def wait(self, timeout: float = 15.0) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the pool did not exit in {timeout}s; log:\n{self.log()[-4000:]}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.log_file.close()


@pytest.fixture
def start_pool(tmp_path: Path) -> Iterator[Callable[..., Pool]]:
    """``start_pool(url, "--queues", "a,b", ...)``: every pool is stopped at teardown."""
    pools: list[Pool] = []

    def start(url: str, *args: str) -> Pool:
        pool = Pool(["--url", url, *args], tmp_path / f"pool{len(pools)}.log")
        pools.append(pool)
        return pool

    yield start
    for pool in pools:
        pool.stop()


def wait_until(predicate: Callable[[], object], timeout: float, what: str) -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)
