"""When things go wrong: killed workers, hung performs, failing setups, a killed master."""

from __future__ import annotations

import os
import re
import signal
import time

import pytest
from e2e_support import alive, descendants, wait_for

pytestmark = pytest.mark.timeout(30)


def test_a_killed_worker_is_replaced_at_once(prefork_run) -> None:
    pool = prefork_run("jobs:Sleepy", "--workers", "2")
    pids = pool.workers_up(2)
    victim = pids[0]
    killed_at = time.monotonic()
    os.kill(victim, signal.SIGKILL)
    pool.expect(rf"pid={victim} \w+ -> dead \(exited\)")
    pool.expect(rf"pid={victim} killed by signal 9, which the master did not send")
    [replacement] = pool.workers_up(1)
    assert time.monotonic() - killed_at < 2
    assert replacement not in pids
    wait_for(lambda: pool.marker_lines(f"setup.{replacement}"), 5, "the replacement's setup")
    assert alive(pids[1]), "the other worker is untouched"
    pool.kill("QUIT")
    assert pool.wait() == 0


def test_a_hung_perform_is_killed_after_timeout_with_its_stack_in_the_log(prefork_run) -> None:
    pool = prefork_run("jobs:Hang", "--workers", "1", "--timeout", "1", "--kill-timeout", "1")
    [pid] = pool.workers_up(1)
    wait_for(lambda: pool.marker_lines(f"starts.{pid}"), 5, "the perform to start")
    started = time.monotonic()
    pool.expect(rf"pid={pid} timed out; dumping its stack \(ABRT\)")
    timed_out = time.monotonic() - started
    assert 0.7 < timed_out < 2.5, f"ABRT {timed_out:.2f}s after the perform began"
    pool.expect(r'File ".*jobs\.py", line \d+ in hang_here')
    pool.expect(rf"pid={pid} stopping -> dead")  # its group KILLed by itself, at once
    [replacement] = pool.workers_up(1)
    assert replacement != pid and not alive(pid)
    pool.kill("TERM")
    assert pool.wait() == 0


def test_heartbeats_keep_a_long_perform_alive(prefork_run) -> None:
    pool = prefork_run("jobs:Beating", "--workers", "1", "--timeout", "1", "--kill-timeout", "1")
    [pid] = pool.workers_up(1)
    wait_for(lambda: pool.marker_lines(f"ends.{pid}"), 8, "a 2.5 s perform to finish")
    assert "timed out" not in pool.output()
    assert alive(pid)
    pool.kill("QUIT")
    assert pool.wait() == 0


def test_a_long_loop_polling_stopping_ends_on_quit(prefork_run) -> None:
    pool = prefork_run("jobs:poll_stopping", "--workers", "2")
    pids = pool.workers_up(2)
    for pid in pids:
        wait_for(lambda pid=pid: pool.marker_lines(f"loop-start.{pid}"), 5, "the loops")
    started = time.monotonic()
    pool.kill("QUIT")
    assert pool.wait() == 0
    assert time.monotonic() - started < 1.5
    for pid in pids:
        assert pool.marker_lines(f"loop-end.{pid}"), "the loop saw stopping and returned"


def test_a_setup_that_always_raises_backs_off_and_the_master_stays_up(prefork_run) -> None:
    pool = prefork_run("jobs:BadSetup", "--workers", "1", "--restart-backoff", "0.1",
                       "--restart-backoff-max", "0.4")
    pool.expect(r"setup failed")
    pool.expect(r"RuntimeError: setup exploded on purpose")
    pool.expect(r"worker group=default slot=0 pid=\d+ setup failed \(exit status 1\)")
    pool.expect(r"pool default: 2 crashes in 60s, next start in 0\.1s "
                r"\(slot default\.0 failed 2 times in a row\)")
    pool.expect(r"next start in 0\.4s \(slot default\.0 failed 4 times in a row\)")
    time.sleep(1.0)
    assert alive(pool.pid), "the master stays up"
    setups = len([name for name in os.listdir(pool.tmp_path) if name.startswith("setup.")])
    assert 4 <= setups <= 10, f"{setups} forks in about 1.7 s: the back-off bounds them"
    pool.kill("QUIT")
    assert pool.wait() == 0


def test_a_perform_that_raises_is_logged_and_its_worker_replaced(prefork_run) -> None:
    pool = prefork_run("jobs:Crashy", "--workers", "1")
    [pid] = pool.workers_up(1)
    pool.expect(rf"pid={pid} perform failed")
    pool.expect(r"ValueError: perform exploded on purpose")
    pool.expect(rf"pid={pid} crashed \(exit status 1\)")
    [replacement] = pool.workers_up(1)
    assert replacement != pid
    pool.kill("QUIT")
    assert pool.wait() == 0


def test_workers_go_when_the_master_is_killed(prefork_run) -> None:
    # no tty: a dying session leader hangs its terminal up, and the workers' last words
    # would be lost with it
    pool = prefork_run("jobs:Sleepy", "--workers", "3", tty=False, PERFORM_SECONDS="0.1")
    pids = pool.workers_up(3)
    assert set(pids) <= set(descendants(pool.pid))
    os.kill(pool.pid, signal.SIGKILL)
    assert pool.wait() == -signal.SIGKILL
    killed_at = time.monotonic()
    wait_for(lambda: not any(alive(pid) for pid in pids), 2, "every worker to be gone")
    assert time.monotonic() - killed_at < 2
    for pid in pids:
        assert pool.marker_lines(f"teardown.{pid}"), "a dead master means a graceful stop"
    for pid in pids:
        assert re.search(rf"pid={pid}: master pid={pool.pid} is gone; stopping", pool.output())


def test_too_many_crashes_make_the_master_give_up_with_status_1(prefork_run) -> None:
    pool = prefork_run("jobs:BadSetup", "--workers", "2", "--max-restarts", "3",
                       "--restart-period", "60", "--restart-backoff", "0.05",
                       "--restart-backoff-max", "0.1")
    pool.expect(r"master running -> terminating \(restarts_exhausted\)")
    pool.expect(r"more than 3 crashes in 60s: giving up")
    assert pool.wait() == 1
