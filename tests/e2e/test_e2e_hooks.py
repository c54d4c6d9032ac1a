"""Hooks with context, with real processes: their order, where each runs, and what it is
told (the master's view, the worker's pool, slot and pid, how a worker ended and the
perform it was in); a failing ``after_fork`` fails the worker's start."""

from __future__ import annotations

import os
import signal

import pytest
from e2e_support import wait_for

pytestmark = pytest.mark.timeout(60)


def hook_lines(pool) -> list[list[str]]:
    return [line.split() for line in pool.marker_lines("hooks")]


def test_hooks_run_in_order_with_their_context(prefork_run, tmp_path) -> None:
    config = tmp_path / "hooks.toml"
    config.write_text('job = "jobs:Sleepy"\nworkers = 2\nhooks = "hook_module"\n'
                      'name = "hooked"\n')
    pool = prefork_run("-c", str(config), PERFORM_SECONDS="1")
    first, second = pool.workers_up(2)
    master = pool.pid
    wait_for(lambda: len(pool.marker_lines(f"starts.{first}")) >= 1, 5, "a perform")
    os.kill(first, signal.SIGKILL)  # in its first perform
    pool.expect(rf"pid={first} killed by signal 9")
    [third] = pool.workers_up(1)
    pool.kill("QUIT")
    assert pool.wait() == 0
    lines = hook_lines(pool)
    names = [line[0] for line in lines]
    # the master's: two forks, then ready; each worker's after_fork before its setup. The
    # master's lines are in order among themselves; a worker's after_fork, written in
    # another process, may come before the master's next before_fork
    in_master = [line for line in lines if line[-1] == f"in={master}"]
    assert [line[0] for line in in_master[:2]] == ["before_fork", "before_fork"]
    assert names[0] == "before_fork"
    assert lines[0][1:5] == ["default", "0", "None", "hooked"]
    assert lines[0][-1] == f"in={master}"
    ready = next(line for line in lines if line[0] == "when_ready")
    assert ready[1:4] == ["hooked", "running", "2"] and ready[-1] == f"in={master}"
    for pid in (first, second, third):
        [after] = [line for line in lines if line[0] == "after_fork" and line[3] == str(pid)]
        assert after[-1] == f"in={pid}", "after_fork runs in the worker"
    # the first worker up may be either slot: its after_fork says which; its replacement
    # takes the same slot
    [first_slot] = [line[2] for line in lines if line[0] == "after_fork"
                    and line[3] == str(first)]
    [third_slot] = [line[2] for line in lines if line[0] == "after_fork"
                    and line[3] == str(third)]
    assert third_slot == first_slot
    killed = [line for line in lines if line[0] == "on_worker_exit" and line[3] == str(first)]
    # pool, slot, pid, outcome, status, the perform it was in (its first)
    assert killed == [["on_worker_exit", "default", first_slot, str(first), "killed", "-9",
                       "1", f"in={master}"]]
    for pid in (second, third):
        [gone] = [line for line in lines if line[0] == "on_worker_exit" and line[3] == str(pid)]
        assert gone[4:7] == ["retired", "0", "None"], "a graceful stop leaves no perform"
        [exit_] = [line for line in lines if line[0] == "before_exit" and line[3] == str(pid)]
        assert exit_[-1] == f"in={pid}"
        assert names.index("before_exit") < len(names)
    assert sum(name == "before_fork" for name in names) == 3


def test_a_failing_after_fork_fails_the_start_like_setup(prefork_run, tmp_path) -> None:
    config = tmp_path / "hooks.toml"
    config.write_text('job = "jobs:Sleepy"\nworkers = 1\nhooks = "hook_module"\n'
                      "restart_backoff = 5\n")
    pool = prefork_run("-c", str(config), HOOK_FAIL="after_fork")
    pool.expect(r"hook after_fork raised")
    pool.expect(r"after_fork broke on purpose")
    pool.expect(r"setup failed")
    assert not list(tmp_path.glob("setup.*")), "setup() never ran"
    pool.kill("QUIT")
    assert pool.wait() == 0
