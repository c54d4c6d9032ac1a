"""The forking strategy: each perform in a child of the worker."""

from __future__ import annotations

import os
import re
import signal
import time

import pytest
from e2e_support import alive, wait_for

pytestmark = pytest.mark.timeout(30)


def test_each_perform_runs_in_its_own_process(prefork_run) -> None:
    pool = prefork_run("jobs:Sleepy", "--workers", "2", "--strategy", "forking",
                       PERFORM_SECONDS="0.02")
    workers = pool.workers_up(2)
    for worker in workers:
        wait_for(lambda w=worker: len(pool.marker_lines(f"ends.{w}")) >= 5, 5, "performs")
    pool.kill("QUIT")
    assert pool.wait() == 0
    for worker in workers:
        perform_pids = pool.marker_lines(f"starts.{worker}")
        assert len(set(perform_pids)) == len(perform_pids), "a new process per perform"
        assert str(worker) not in perform_pids, "never in the worker itself"
        assert pool.marker_lines(f"teardown.{worker}") == [str(worker)], (
            "setup and teardown run in the worker"
        )


def test_a_failing_perform_kills_only_its_child(prefork_run) -> None:
    pool = prefork_run("jobs:Crashy", "--workers", "1", "--strategy", "forking",
                       CRASH_ALWAYS="1")
    [worker] = pool.workers_up(1)
    for _ in range(2):  # logged once each, by the child (issue 10): the worker adds nothing
        pool.expect(rf"pid={worker}: perform in pid=\d+ raised")
        pool.expect(r"ValueError: perform exploded on purpose")
    assert alive(worker), "the worker outlives its performs"
    assert "crashed" not in pool.output()
    assert not re.search(r"perform in pid=\d+ failed", pool.output())
    pool.kill("QUIT")
    assert pool.wait() == 0


def one_long_forked_perform(prefork_run):
    """A pool of one forking worker in a 30 s perform: (pool, worker pid, child pid)."""
    pool = prefork_run("jobs:Sleepy", "--workers", "1", "--strategy", "forking",
                       PERFORM_SECONDS="30")
    [worker] = pool.workers_up(1)
    [child] = wait_for(lambda: pool.marker_lines(f"starts.{worker}"), 5, "a perform")
    return pool, worker, int(child)


def test_term_reaches_the_perform_child(prefork_run) -> None:
    pool, worker, child = one_long_forked_perform(prefork_run)
    assert alive(child)
    started = time.monotonic()
    pool.kill("TERM")
    assert pool.wait() == 0
    assert time.monotonic() - started < 2
    wait_for(lambda: not alive(child), 2, "the perform's process to be gone")
    assert not pool.marker_lines(f"ends.{worker}")


def test_quit_lets_the_forked_perform_finish(prefork_run) -> None:
    pool = prefork_run("jobs:Sleepy", "--workers", "1", "--strategy", "forking",
                       PERFORM_SECONDS="1")
    [worker] = pool.workers_up(1)
    wait_for(lambda: pool.marker_lines(f"starts.{worker}"), 5, "a perform")
    pool.kill("QUIT")
    assert pool.wait() == 0
    assert len(pool.marker_lines(f"ends.{worker}")) == len(pool.marker_lines(f"starts.{worker}"))
    assert pool.marker_lines(f"teardown.{worker}")


def test_a_hung_forked_perform_dumps_its_stack_and_is_killed(prefork_run) -> None:
    pool = prefork_run("jobs:Hang", "--workers", "1", "--strategy", "forking",
                       "--timeout", "1", "--kill-timeout", "1")
    [worker] = pool.workers_up(1)
    [child] = wait_for(lambda: pool.marker_lines(f"starts.{worker}"), 5, "a perform")
    pool.expect(rf"pid={worker} timed out; dumping its stack \(ABRT\)")
    pool.expect(r'File ".*jobs\.py", line \d+ in hang_here')
    pool.expect(rf"pid={worker} stopping -> dead")  # the child KILLed the group at once
    wait_for(lambda: not alive(int(child)), 2, "KILL to take the perform's process too")
    pool.kill("TERM")
    assert pool.wait() == 0


def test_a_killed_worker_takes_its_perform_along(prefork_run) -> None:
    pool, worker, child = one_long_forked_perform(prefork_run)
    os.kill(worker, signal.SIGKILL)  # the worker alone, not its process group
    wait_for(lambda: not alive(child), 5, "the perform's process to die with its worker")
    pool.kill("TERM")
    assert pool.wait() == 0


def test_abrt_to_a_perform_process_dumps_its_stack_and_ends_its_worker(prefork_run) -> None:
    pool = prefork_run("jobs:Hang", "--workers", "1", "--strategy", "forking")
    for _ in range(2):  # the replacement's perform child dumps the same way
        [worker] = pool.workers_up(1)
        [child] = wait_for(lambda w=worker: pool.marker_lines(f"starts.{w}"), 5, "a perform")
        os.kill(int(child), signal.SIGABRT)
        pool.expect(rf"pid={worker} timed out, in its perform child pid={child}")
        pool.expect(r'File ".*jobs\.py", line \d+ in hang_here')
        pool.expect(rf"pid={worker} \w+ -> dead")
        wait_for(lambda w=worker: not alive(w), 2, "the group KILLed, the worker with it")
    assert "Fatal Python error" not in pool.output()
    pool.kill("TERM")
    assert pool.wait() == 0
