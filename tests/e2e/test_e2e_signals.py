"""Every signal of DESIGN.md's table, sent to the real master."""

from __future__ import annotations

import os
import time

import pytest
from e2e_support import alive, wait_for

pytestmark = pytest.mark.timeout(30)


def test_ttin_and_ttou_resize_within_bounds(prefork_run) -> None:
    pool = prefork_run("jobs:Sleepy", "--workers", "1", "--max-workers", "2")
    [first] = pool.workers_up(1)
    pool.kill("TTIN")
    pool.expect(r"group default: 1 -> 2 workers")
    [second] = pool.workers_up(1)
    pool.kill("TTIN")
    pool.expect(r"group default stays at 2 workers \(asked for 3; bounds 0\.\.2\)")
    pool.kill("TTOU")
    pool.expect(r"group default: 2 -> 1 workers")
    pool.expect(rf"pid={second} \w+ -> stopping \(stop_requested\)")
    pool.expect(rf"pid={second} stopping -> dead")
    pool.kill("TTOU")
    pool.expect(r"group default: 1 -> 0 workers")
    pool.expect(rf"pid={first} stopping -> dead")
    pool.kill("TTOU")
    pool.expect(r"group default stays at 0 workers")
    assert not alive(first) and not alive(second)
    assert pool.marker_lines(f"teardown.{first}") and pool.marker_lines(f"teardown.{second}")
    pool.kill("TTIN")
    pool.expect(r"group default: 0 -> 1 workers")
    pool.workers_up(1)
    pool.kill("QUIT")
    assert pool.wait() == 0


def test_winch_is_ignored_with_a_controlling_terminal(prefork_run) -> None:
    pool = prefork_run("jobs:Sleepy", "--workers", "1")  # pexpect: a pty is our terminal
    [pid] = pool.workers_up(1)
    pool.kill("WINCH")
    pool.expect(r"WINCH ignored: the master has a controlling terminal")
    time.sleep(0.2)
    assert alive(pid)
    assert "paused" not in pool.output()
    pool.kill("QUIT")
    assert pool.wait() == 0


def test_winch_without_a_terminal_pauses_and_hup_resumes(prefork_run) -> None:
    pool = prefork_run("jobs:Sleepy", "--workers", "2", tty=False)
    pids = pool.workers_up(2)
    pool.kill("WINCH")
    pool.expect(r"master running -> paused \(winch_received\)")
    for _ in pids:
        pool.expect(r"stopping -> dead")
    time.sleep(0.2)
    assert not any(alive(pid) for pid in pids)
    assert alive(pool.pid), "the master stays up while paused"
    assert all(pool.marker_lines(f"teardown.{pid}") for pid in pids), "a graceful stop"
    pool.kill("HUP")
    pool.expect(r"master paused -> reloading \(hup_received\)")
    fresh = pool.workers_up(2)
    assert not set(fresh) & set(pids)
    pool.kill("QUIT")
    assert pool.wait() == 0


def test_hup_replaces_every_worker_gracefully(prefork_run) -> None:
    pool = prefork_run("jobs:Sleepy", "--workers", "2", PERFORM_SECONDS="0.3")
    old = pool.workers_up(2)
    pool.kill("HUP")
    pool.expect(r"master running -> reloading \(hup_received\)")
    new = pool.workers_up(2)
    assert not set(new) & set(old)
    # the old workers may all be gone before the new ones report in: no order assumed
    wait_for(lambda: "master reloading -> running (reload_finished)" in pool.output(), 5,
             "the reload to finish")
    for pid in old:
        assert not alive(pid)
        assert pool.marker_lines(f"teardown.{pid}"), "old workers stop gracefully"
        assert len(pool.marker_lines(f"ends.{pid}")) == len(pool.marker_lines(f"starts.{pid}"))
    assert all(alive(pid) for pid in new)
    pool.kill("QUIT")
    assert pool.wait() == 0


def test_usr1_reopens_the_log_file_in_master_and_workers(prefork_run, tmp_path) -> None:
    log = tmp_path / "pool.log"
    pool = prefork_run("jobs:Sleepy", "--workers", "1", "--log-file", str(log),
                       PRINT_PERFORMS="1")
    wait_for(lambda: log.exists() and "spawning -> " in log.read_text(), 5, "the log file")
    [pid] = [int(line.split("pid=")[1].split()[0]) for line in log.read_text().splitlines()
             if "spawning -> " in line]
    wait_for(lambda: "perform by pid=" in log.read_text(), 5, "a worker's print in the log")
    rotated = tmp_path / "pool.log.1"
    os.rename(log, rotated)
    pool.kill("USR1")
    wait_for(lambda: log.exists(), 5, "the master to reopen the log file")
    wait_for(lambda: f"perform by pid={pid}" in log.read_text(), 5,
             "the worker to write into the new log file")
    assert "reopened the log files" in log.read_text()
    pool.kill("TTIN")
    wait_for(lambda: "group default: 1 -> 2 workers" in log.read_text(), 5, "a master line")
    size = rotated.stat().st_size
    time.sleep(0.3)
    assert rotated.stat().st_size == size, "nobody writes the rotated file any more"
    pool.kill("QUIT")
    assert pool.wait() == 0


def test_usr2_holds_the_workers_and_cont_lets_them_go_on(prefork_run) -> None:
    pool = prefork_run("jobs:Sleepy", "--workers", "1")
    [pid] = pool.workers_up(1)
    wait_for(lambda: len(pool.marker_lines(f"ends.{pid}")) >= 2, 5, "performs")
    pool.kill("USR2")
    pool.expect(rf"pid={pid} holding \(USR2\)")
    held = len(pool.marker_lines(f"ends.{pid}"))
    time.sleep(0.5)
    assert len(pool.marker_lines(f"ends.{pid}")) == held, "no perform while held"
    assert len(pool.marker_lines(f"starts.{pid}")) == held
    pool.kill("CONT")
    pool.expect(rf"pid={pid} resuming \(CONT\)")
    wait_for(lambda: len(pool.marker_lines(f"ends.{pid}")) > held + 2, 5, "performs again")
    pool.kill("USR2")
    pool.expect(r"holding \(USR2\)")
    pool.kill("QUIT")  # a held worker stops gracefully too
    assert pool.wait() == 0
    assert pool.marker_lines(f"teardown.{pid}")
