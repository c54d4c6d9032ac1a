"""A pool's life, end to end: start, perform, and the three ways to stop."""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

import pytest
from e2e_support import alive, wait_for

pytestmark = pytest.mark.timeout(30)


def test_workers_start_and_perform_then_quit_stops_cleanly(prefork_run) -> None:
    pool = prefork_run("jobs:Sleepy", "--workers", "2")
    pool.expect(r"master booting -> running \(booted\)")
    pids = pool.workers_up(2)
    assert len(set(pids)) == 2
    for pid in pids:
        wait_for(lambda pid=pid: len(pool.marker_lines(f"ends.{pid}")) >= 3, 5,
                 f"3 performs by {pid}")
        assert pool.marker_lines(f"setup.{pid}"), "setup() ran in the worker"
    pool.kill("QUIT")
    pool.expect(r"master running -> draining \(quit_received\)")
    pool.expect(r"master draining -> stopped \(workers_gone\)")
    assert pool.wait() == 0
    for pid in pids:
        assert pool.marker_lines(f"teardown.{pid}"), "teardown() ran on the graceful stop"
        assert not alive(pid)


def test_quit_lets_the_perform_in_flight_finish(prefork_run) -> None:
    pool = prefork_run("jobs:Sleepy", "--workers", "1", "--graceful-timeout", "10",
                       PERFORM_SECONDS="1.5")
    [pid] = pool.workers_up(1)
    wait_for(lambda: pool.marker_lines(f"starts.{pid}"), 5, "a perform to start")
    started = time.monotonic()
    pool.kill("QUIT")
    pool.expect(rf"pid={pid} \w+ -> stopping \(stop_requested\)")
    assert pool.wait() == 0
    waited = time.monotonic() - started
    starts, ends = pool.marker_lines(f"starts.{pid}"), pool.marker_lines(f"ends.{pid}")
    assert len(ends) == len(starts) == 1, "the perform in flight finished, no new one began"
    assert pool.marker_lines(f"teardown.{pid}")
    assert 0.5 < waited < 5, f"the master waited for the perform ({waited:.2f}s)"
    assert "KILL" not in pool.output()


@pytest.mark.parametrize("signal_name", ["TERM", "INT"])
def test_term_and_int_stop_at_once(prefork_run, signal_name: str) -> None:
    pool = prefork_run("jobs:Sleepy", "--workers", "2", "--kill-timeout", "10",
                       PERFORM_SECONDS="30")
    pids = pool.workers_up(2)
    for pid in pids:
        wait_for(lambda pid=pid: pool.marker_lines(f"starts.{pid}"), 5, "performs to start")
    started = time.monotonic()
    pool.kill(signal_name)
    pool.expect(rf"master running -> terminating \({signal_name.lower()}_received\)")
    assert pool.wait() == 0
    assert time.monotonic() - started < 2, "a quick stop does not wait for performs"
    for pid in pids:
        assert not pool.marker_lines(f"ends.{pid}"), "the perform was cut short"
        assert not pool.marker_lines(f"teardown.{pid}"), "no teardown on a quick stop"
        assert not alive(pid)


def test_graceful_term_makes_term_a_quit(prefork_run) -> None:
    pool = prefork_run("jobs:Sleepy", "--workers", "1", "--graceful-term", "true",
                       PERFORM_SECONDS="1")
    [pid] = pool.workers_up(1)
    wait_for(lambda: pool.marker_lines(f"starts.{pid}"), 5, "a perform to start")
    pool.kill("TERM")
    pool.expect(r"master running -> draining \(term_received\)")
    assert pool.wait() == 0
    assert len(pool.marker_lines(f"ends.{pid}")) == len(pool.marker_lines(f"starts.{pid}"))
    assert pool.marker_lines(f"teardown.{pid}")


def test_max_performs_retires_a_worker_which_is_replaced(prefork_run) -> None:
    """The worker asks at its third perform and performs on; it is told to stop once its
    replacement is up (docs/supervision.md)."""
    pool = prefork_run("jobs:Sleepy", "--workers", "1", "--max-performs", "3",
                       PERFORM_SECONDS="0.01")
    [first] = pool.workers_up(1)
    pool.expect(rf"pid={first} did 3 performs")
    [second] = pool.workers_up(1)
    pool.expect(rf"pid={first} retiring -> stopping \(stop_requested\)")
    pool.expect(rf"pid={first} stopping -> dead")
    assert second != first
    assert len(pool.marker_lines(f"ends.{first}")) >= 3
    assert pool.marker_lines(f"teardown.{first}"), "retiring is a graceful stop"
    pool.kill("QUIT")
    assert pool.wait() == 0


def test_a_plain_function_is_a_perform(prefork_run) -> None:
    pool = prefork_run("jobs:plain_perform", "--workers", "1")
    [pid] = pool.workers_up(1)
    wait_for(lambda: pool.marker_lines(f"plain.{pid}"), 5, "the function to run")
    pool.kill("QUIT")
    assert pool.wait() == 0


def test_the_console_script_runs_the_same_command(tmp_path: Path) -> None:
    import pexpect

    script = shutil.which("prefork", path=os.path.dirname(sys.executable))
    if script is None:
        pytest.skip("the prefork console script is not installed next to this python")
    from e2e_support import STARTED, command_env

    child = pexpect.spawn(script, ["run", "jobs:Sleepy", "--workers", "1"],
                          env=command_env(tmp_path), encoding="utf-8", timeout=10)
    STARTED.add(child.pid)
    try:
        child.expect(r"spawning -> (idle|performing)")
        child.kill(3)  # QUIT
        child.expect(pexpect.EOF)
        child.close()
        assert child.exitstatus == 0
    finally:
        child.close(force=True)
