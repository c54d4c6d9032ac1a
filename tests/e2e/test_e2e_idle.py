"""``prefork.IDLE`` with real processes: empty polls of a directory queue do not count.

The job (``DirQueue`` below, run as ``test_e2e_idle:DirQueue``) takes one file of the
test's directory per perform and returns ``prefork.IDLE`` when there is none. With
``--max-performs 3`` a worker that polled an empty directory hundreds of times is still
there; it is recycled after its third file (it asks for a replacement), with either
strategy.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

import prefork

pytestmark = pytest.mark.timeout(40)


class DirQueue(prefork.Job):
    """One file of ``$PREFORK_E2E_DIR/inbox`` per perform, moved to ``done``; else IDLE."""

    def setup(self) -> None:
        root = Path(os.environ["PREFORK_E2E_DIR"])
        self.inbox, self.done = root / "inbox", root / "done"
        self.polls = root / f"polls.{os.getpid()}"

    def perform(self) -> object:
        names = sorted(os.listdir(self.inbox))
        if not names:
            with open(self.polls, "a") as file:  # one byte per empty poll
                file.write(".")
            time.sleep(0.005)
            return prefork.IDLE
        self.worker.heartbeat()
        os.rename(self.inbox / names[0], self.done / names[0])
        return None


@pytest.mark.parametrize("strategy", ["simple", "forking"])
def test_empty_polls_do_not_count_toward_max_performs(prefork_run, tmp_path,
                                                      strategy) -> None:
    (tmp_path / "inbox").mkdir()
    (tmp_path / "done").mkdir()
    pool = prefork_run("test_e2e_idle:DirQueue", "-w", "1", "--max-performs", "3",
                       "--strategy", strategy)
    [first] = pool.workers_up(1)
    for name in ("a", "b"):
        (tmp_path / "inbox" / name).write_text(name)
    deadline = time.monotonic() + 10
    polls = tmp_path / f"polls.{first}"
    while time.monotonic() < deadline:
        if len(os.listdir(tmp_path / "done")) == 2 and polls.exists() and \
                polls.stat().st_size > 100:
            break
        time.sleep(0.05)
    empty = polls.stat().st_size if polls.exists() else 0
    assert empty > 100, "the worker polled the empty inbox many times"
    assert sorted(os.listdir(tmp_path / "done")) == ["a", "b"]
    assert "did 3 performs" not in pool.output(), "empty polls are not performs"
    (tmp_path / "inbox" / "c").write_text("c")
    pool.expect(rf"pid={first} did 3 performs \(max_performs 3\)")
    [second] = pool.workers_up(1)
    assert second != first
    pool.kill("QUIT")
    assert pool.wait() == 0
