"""Helpers of the end-to-end tests: the process table, waiting, the running command.

Kept out of conftest.py so that test modules can import them (``from e2e_support import
...``; pytest puts this directory on sys.path).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pexpect
import pytest

ROOT = Path(__file__).resolve().parents[2]
E2E = Path(__file__).resolve().parent
SRC = ROOT / "src"

# the pids this session started itself (pexpect and subprocess children): the zombie
# reaper below leaves those to their owners
STARTED: set[int] = set()


# --- the process table ----------------------------------------------------------------------

def process_table() -> dict[int, tuple[int, str]]:
    """pid -> (ppid, state letter), from /proc."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as file:
                stat = file.read()
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()
        table[int(entry)] = (int(fields[1]), fields[0])
    return table


def descendants(root: int | None = None) -> dict[int, str]:
    """Every live descendant of ``root`` (default: this process): pid -> state."""
    root = os.getpid() if root is None else root
    table = process_table()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found: dict[int, str] = {}
    todo = list(children.get(root, []))
    while todo:
        pid = todo.pop()
        found[pid] = table[pid][1]
        todo.extend(children.get(pid, []))
    return found


def reap_orphans() -> None:
    """Reap zombies re-parented to us (we are their subreaper), not pexpect's own."""
    for pid, state in descendants().items():
        if state == "Z" and pid not in STARTED:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not; orphaned zombies of ours are reaped)."""
    reap_orphans()
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as file:
            state = file.read().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``predicate`` until truthy (returned) or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def leftovers(timeout: float) -> dict[int, str]:
    deadline = time.monotonic() + timeout
    while True:
        reap_orphans()
        left = {pid: state for pid, state in descendants().items() if state != "Z"}
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


def describe(pids: dict[int, str]) -> str:
    lines = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as file:
                cmdline = file.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            cmdline = "?"
        lines.append(f"pid {pid}: {cmdline}")
    return "\n".join(lines)


def kill_all(pids: dict[int, str]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    time.sleep(0.1)
    reap_orphans()


# --- running the command --------------------------------------------------------------------

def command_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(SRC), str(E2E), env.get("PYTHONPATH")])
    )
    env["PREFORK_E2E_DIR"] = str(tmp_path)
    env.pop("PRINT_PERFORMS", None)
    env.update(extra)
    return env


WORKER_UP = re.compile(r"worker group=(\S+) slot=(\d+) pid=(\d+) spawning -> (?:idle|performing)")


class Running:
    """A running ``prefork`` command, with pexpect's ``expect`` over its log."""

    def __init__(self, args: list[str], tmp_path: Path, env: dict[str, str], tty: bool,
                 timeout: float) -> None:
        self.tmp_path = tmp_path
        self.timeout = timeout
        self.tty = tty
        command = [sys.executable, "-m", "prefork", "run", *args]
        self.transcript = tmp_path / "transcript.log"
        if tty:
            self.child = pexpect.spawn(
                command[0], command[1:], cwd=str(ROOT), env=env, encoding="utf-8",
                codec_errors="replace", timeout=timeout, dimensions=(24, 200),
            )
            self._log = open(self.transcript, "w", encoding="utf-8")  # noqa: SIM115
            self.child.logfile_read = self._log
            self.pid = self.child.pid
        else:
            self._log = open(self.transcript, "w", encoding="utf-8")  # noqa: SIM115
            self.popen = subprocess.Popen(
                command, cwd=str(ROOT), env=env, stdin=subprocess.DEVNULL,
                stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
            )
            self.pid = self.popen.pid
            self._seen = 0
        STARTED.add(self.pid)
        self.exit_status: int | None = None

    # reading the log ------------------------------------------------------------------------

    def expect(self, pattern: str, timeout: float | None = None) -> re.Match[str]:
        """Wait for ``pattern`` (a regex) in the output after the last match."""
        timeout = self.timeout if timeout is None else timeout
        if self.tty:
            try:
                self.child.expect(pattern, timeout=timeout)
            except (pexpect.TIMEOUT, pexpect.EOF) as error:
                pytest.fail(f"{type(error).__name__} waiting for {pattern!r}; output:\n"
                            f"{self.output()[-3000:]}")
            return self.child.match
        compiled = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            text = self.transcript.read_text(encoding="utf-8", errors="replace")
            match = compiled.search(text, self._seen)
            if match:
                self._seen = match.end()
                return match
            if time.monotonic() > deadline:
                pytest.fail(f"timed out waiting for {pattern!r}; output:\n{text[-3000:]}")
            time.sleep(0.02)

    def output(self) -> str:
        """Everything written so far (matched or not)."""
        if self.tty and self.exit_status is None:
            # pexpect reads only inside expect(): let it read what is there, into its
            # buffer and the transcript, without consuming anything (a TIMEOUT match
            # leaves the buffer for the next expect)
            with contextlib.suppress(pexpect.EOF):
                self.child.expect(pexpect.TIMEOUT, timeout=0.05)
        self._log.flush()
        return self.transcript.read_text(encoding="utf-8", errors="replace")

    def workers_up(self, n: int, timeout: float | None = None) -> list[int]:
        """Wait for ``n`` more workers to come up; their pids."""
        return [int(self.expect(WORKER_UP.pattern, timeout).group(3)) for _ in range(n)]

    # signals and exit -----------------------------------------------------------------------

    def kill(self, name: str) -> None:
        os.kill(self.pid, getattr(signal, f"SIG{name}"))

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the master to exit; its exit status."""
        timeout = self.timeout if timeout is None else timeout
        if self.exit_status is not None:
            return self.exit_status
        if self.tty:
            try:
                self.child.expect(pexpect.EOF, timeout=timeout)
            except pexpect.TIMEOUT:
                pytest.fail(f"the master did not exit in {timeout}s; output:\n"
                            f"{self.output()[-3000:]}")
            self.child.close()
            status = self.child.exitstatus
            if status is None:
                status = -self.child.signalstatus
        else:
            try:
                status = self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                pytest.fail(f"the master did not exit in {timeout}s; output:\n"
                            f"{self.output()[-3000:]}")
        self.exit_status = status
        return status

    def stop(self) -> None:
        """Teardown: QUIT-less, quick and sure. TERM, then KILL the master's group too."""
        if self.exit_status is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and alive(self.pid):
                time.sleep(0.02)
            if alive(self.pid):
                for pid in descendants(self.pid):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
            if self.tty:
                self.child.close(force=True)
            else:
                self.popen.wait(5)
        self._log.close()

    # markers --------------------------------------------------------------------------------

    def marker_lines(self, name: str) -> list[str]:
        path = self.tmp_path / name
        if not path.exists():
            return []
        return [line for line in path.read_text().splitlines() if line]


def run_command(tmp_path: Path, *args: str, timeout: float = 20,
                env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m prefork ARGS`` to completion (no tty), capturing its output;
    ``env`` adds to the environment."""
    process = subprocess.Popen(
        [sys.executable, "-m", "prefork", *args], cwd=str(ROOT),
        env=command_env(tmp_path, **(env or {})),
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    STARTED.add(process.pid)
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        pytest.fail(f"prefork {' '.join(args)} did not finish in {timeout}s:\n{err}")
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)
