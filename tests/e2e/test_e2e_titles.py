"""Process titles by default, read from /proc/PID/cmdline: the master's with its counts,
each worker's with its state, and a forked perform's child's."""

from __future__ import annotations

import re

import pytest
from e2e_support import descendants, wait_for

pytestmark = pytest.mark.timeout(60)


def title(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as file:
            return file.read().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def test_the_master_and_its_workers_say_what_they_are(prefork_run) -> None:
    pool = prefork_run("jobs:Sleepy", "-w", "2", "--name", "titled", PERFORM_SECONDS="0.5")
    first, second = pool.workers_up(2)
    wait_for(lambda: title(pool.pid) == "prefork master [titled]: 2 workers in 1 pool "
                                        "(running)", 5, "the master's title")
    for pid in (first, second):
        wait_for(lambda pid=pid: re.fullmatch(
            r"prefork worker \[titled/default#[01]\]: performing since \d\d:\d\d:\d\d",
            title(pid)), 5, f"worker {pid}'s title")
    pool.kill("TTIN")
    wait_for(lambda: title(pool.pid).startswith("prefork master [titled]: 3 workers"), 5,
             "the count in the title")
    pool.kill("QUIT")
    assert pool.wait() == 0


def test_a_forked_perform_child_is_titled(prefork_run) -> None:
    pool = prefork_run("jobs:Sleepy", "-w", "1", "--strategy", "forking", "--name", "fk",
                       PERFORM_SECONDS="0.5")
    [worker] = pool.workers_up(1)

    def child_title() -> str | None:
        titles = [title(pid) for pid in descendants(worker)]
        return next((text for text in titles if text.startswith("prefork perform")), None)

    assert wait_for(child_title, 5, "a perform child") == \
        "prefork perform [fk/default#0]: performing"
    pool.kill("QUIT")
    assert pool.wait() == 0
