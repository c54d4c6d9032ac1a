"""The pid file: claimed and locked at start, written atomically when ready, removed at
a clean exit; a second claimer is refused, a stale file is taken over.

A second "master" is a forked process here (``flock`` locks belong to open files, so a
second open in the same process would be refused just the same, but a real second
process is what the lock is for).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from prefork.core.errors import ConfigError
from prefork.posix.pidfile import PidFile, PidFileInUse


def _in_child(body) -> int:  # type: ignore[no-untyped-def]
    """Run ``body()`` in a forked child; its exit status (0: it returned)."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            body()
            code = 0
        except PidFileInUse:
            code = 3
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_claimed_then_written_then_removed(tmp_path: Path) -> None:
    path = tmp_path / "master.pid"
    pidfile = PidFile(str(path), logging.getLogger("test"))
    pidfile.claim()
    assert path.exists() and path.read_text() == "", "empty until the master is ready"
    pidfile.write(os.getpid())
    assert path.read_text() == f"{os.getpid()}\n"
    assert not [p for p in tmp_path.iterdir() if p != path], "no temporary file is left"
    pidfile.release()
    assert not path.exists()


def test_a_second_claimer_is_refused_and_the_file_is_untouched(tmp_path: Path) -> None:
    path = tmp_path / "master.pid"
    pidfile = PidFile(str(path), logging.getLogger("test"))
    pidfile.claim()
    pidfile.write(os.getpid())

    def second() -> None:
        PidFile(str(path), logging.getLogger("test")).claim()

    try:
        assert _in_child(second) == 3
        assert path.read_text() == f"{os.getpid()}\n"
    finally:
        pidfile.release()


def test_the_refusal_names_the_file_and_the_pid(tmp_path: Path) -> None:
    path = tmp_path / "master.pid"
    first = PidFile(str(path), logging.getLogger("test"))
    first.claim()
    first.write(os.getpid())
    read, write = os.pipe()

    def second() -> None:
        try:
            PidFile(str(path), logging.getLogger("test")).claim()
        except PidFileInUse as error:
            os.write(write, str(error).encode())
            raise

    try:
        assert _in_child(second) == 3
        os.close(write)
        message = os.read(read, 1000).decode()
    finally:
        os.close(read)
        first.release()
    assert message == f"pidfile {path} is held by a running master (pid {os.getpid()})"


def test_a_stale_file_is_taken_over_with_a_warning(tmp_path: Path, caplog) -> None:
    path = tmp_path / "master.pid"
    dead_pid = _dead_pid()
    path.write_text(f"{dead_pid}\n")
    pidfile = PidFile(str(path), logging.getLogger("test"))
    with caplog.at_level(logging.WARNING, logger="test"):
        pidfile.claim()
    try:
        assert path.read_text() == "", "the stale pid is wiped at once"
        assert f"pid {dead_pid}, which is gone" in caplog.text
        assert "taking it over" in caplog.text
    finally:
        pidfile.release()


def test_the_write_keeps_the_lock(tmp_path: Path) -> None:
    """The atomic write replaces the file: the new one must be locked too."""
    path = tmp_path / "master.pid"
    pidfile = PidFile(str(path), logging.getLogger("test"))
    pidfile.claim()
    pidfile.write(os.getpid())
    try:
        assert _in_child(lambda: PidFile(str(path), logging.getLogger("t")).claim()) == 3
    finally:
        pidfile.release()
    assert _in_child(lambda: PidFile(str(path), logging.getLogger("t")).claim()) == 0


def test_a_symbolic_link_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("precious\n")
    path = tmp_path / "master.pid"
    path.symlink_to(target)
    with pytest.raises(ConfigError, match="symbolic link"):
        PidFile(str(path), logging.getLogger("test")).claim()
    assert target.read_text() == "precious\n"


def test_something_other_than_a_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "master.pid"
    os.mkfifo(path)
    with pytest.raises(ConfigError, match="not a regular file"):
        PidFile(str(path), logging.getLogger("test")).claim()


def test_release_leaves_a_successors_file_alone(tmp_path: Path) -> None:
    path = tmp_path / "master.pid"
    pidfile = PidFile(str(path), logging.getLogger("test"))
    pidfile.claim()
    pidfile.write(os.getpid())
    path.unlink()
    path.write_text("4242\n")  # someone else's now
    pidfile.release()
    assert path.read_text() == "4242\n"


def test_a_forked_child_does_not_hold_the_lock(tmp_path: Path) -> None:
    """Workers are forked from the master: a worker that outlives its master must not
    keep the next master out."""
    path = tmp_path / "master.pid"
    pidfile = PidFile(str(path), logging.getLogger("test"))
    pidfile.claim()
    pidfile.write(os.getpid())
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the "worker": waits for the pipe to close
        os.close(write)
        os.read(read, 1)
        os._exit(0)
    os.close(read)
    try:
        pidfile.release()  # the master is gone; its worker is not
        assert _in_child(lambda: PidFile(str(path), logging.getLogger("t")).claim()) == 0
    finally:
        os.close(write)
        os.waitpid(pid, 0)


def _dead_pid() -> int:
    pid = os.fork()
    if pid == 0:  # pragma: no cover
        os._exit(0)
    os.waitpid(pid, 0)
    return pid
