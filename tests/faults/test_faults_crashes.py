"""Crash loops: back-off that shows in the timestamps, restart intensity, fork failures."""

from __future__ import annotations

import os
import time

import pytest
from e2e_support import alive, wait_for
from fault_support import (
    LOADED_MARGIN,
    STAMP_SLACK,
    build_fork_shim,
    c_compiler,
    cleaned_up_on_failure,
    intervals,
    log_entries,
    stamped,
    wait_for_lines,
)

BACKOFF, BACKOFF_MAX = 0.1, 0.4
BACKOFF_FLAGS = ("--restart-backoff", str(BACKOFF), "--restart-backoff-max", str(BACKOFF_MAX))


def expected_delay(failures: int) -> float:
    """The back-off the issue asks for: at once, then BACKOFF doubling up to BACKOFF_MAX."""
    return 0.0 if failures <= 1 else min(BACKOFF_MAX, BACKOFF * 2 ** (failures - 2))


def failed_setups(run) -> list[float]:
    """When each worker logged its own failed setup (the line above its traceback)."""
    return [when for when, _, pid, _ in log_entries(run.output(), r"setup failed$")
            if pid != run.pid]


@pytest.mark.timeout(30)
def test_a_setup_that_always_raises_backs_off_capped_and_the_master_stays_up(pool) -> None:
    run = pool("fault_jobs:BadSetup", "--workers", "1", *BACKOFF_FLAGS)
    wait_for(lambda: len(failed_setups(run)) >= 7, 20, "seven failed setups")
    assert alive(run.pid), "the master stays up"
    run.kill("QUIT")
    assert run.wait() == 0
    log = run.output()
    # the master's reaping of each worker (a transition line, whatever the class of end)
    crashes = [when for when, _, pid, _ in log_entries(log, r"pid=\d+ \w+ -> dead")
               if pid == run.pid]
    failures = failed_setups(run)
    delays = [float(m.group(1)) for *_, m in log_entries(log, r"next start in ([\d.]+)s")]
    assert delays[:5] == [expected_delay(n) for n in range(2, 7)], delays
    assert max(delays) == BACKOFF_MAX, "capped"
    # the log's timestamps show it: from a crash to the next setup's failure, at least
    # the back-off (failure n + 1 follows crash n)
    seen = [later - crash for crash, later in zip(crashes, failures[1:], strict=False)]
    print("crash -> next failed setup:", [f"{gap:.3f}" for gap in seen])
    for n, gap in enumerate(seen[:6], start=1):
        assert gap >= expected_delay(n) - STAMP_SLACK, f"failure {n}: {gap:.3f}s"


@pytest.mark.timeout(30)
def test_a_crash_loop_makes_the_master_give_up_with_a_reason(pool) -> None:
    run = pool("fault_jobs:BadSetup", "--workers", "2", "--max-restarts", "3",
               "--restart-period", "60", *BACKOFF_FLAGS)
    assert run.wait() == 1, "a master that gave up exits non-zero"
    log = run.output()
    assert log_entries(log, r"more than 3 crashes in 60s: giving up")
    assert len(failed_setups(run)) == 4, "it gives up on the fourth crash"


@pytest.mark.timeout(30)
def test_a_perform_child_raising_in_a_loop_backs_off_and_counts(pool) -> None:
    run = pool("fault_jobs:Raising", "--workers", "1", "--strategy", "forking",
               "--max-restarts", "5", "--restart-period", "60", *BACKOFF_FLAGS)
    with cleaned_up_on_failure(run, set()):
        # at once, then 0.1, 0.2, 0.4 s: well within 5 s on a loaded machine
        wait_for(lambda: len(stamped(run, "starts")) >= 4, 5, "four failed performs")
        starts = [when for _, when, _ in stamped(run, "starts")]
        gaps = intervals(starts)
        print("gaps between failed performs:", [f"{gap:.3f}" for gap in gaps[:6]])
        for n, gap in enumerate(gaps[:3], start=1):
            assert gap >= expected_delay(n) - STAMP_SLACK, f"after failure {n}: {gap:.3f}s"
        assert run.wait(10) == 1, "six failures in a minute: the master gives up"
        assert log_entries(run.output(), r"more than 5 crashes in 60s: giving up")


@pytest.mark.timeout(40)
@pytest.mark.skipif(c_compiler() is None, reason="no C compiler to build the fork() shim "
                    "(root ignores RLIMIT_NPROC, so the failure is injected with LD_PRELOAD)")
def test_fork_failing_with_eagain_is_logged_and_retried_with_back_off(pool, tmp_path) -> None:
    shim = build_fork_shim(tmp_path)
    gate, attempts = tmp_path / "fork-fails", tmp_path / "fork-attempts"
    run = pool("fault_jobs:Steady", "--workers", "1", *BACKOFF_FLAGS,
               LD_PRELOAD=str(shim), FAULT_FORK_PARENT=str(os.getpid()),
               FAULT_FORK_GATE=str(gate), FAULT_FORK_LOG=str(attempts))
    [first] = run.workers_up(1)
    gate.touch()  # from now on the master's fork() fails with EAGAIN
    run.kill("TTIN")
    window = 3.0
    wait_for_lines(attempts, 1, 5)
    began = time.monotonic()
    time.sleep(window)  # not a wait: the window of the measurement (attempts in 3 s)
    tried = [float(line) for line in attempts.read_text().splitlines()]
    in_window = [when for when in tried if when <= began + window]
    gate.unlink()
    [second] = run.workers_up(1, timeout=5 + BACKOFF_MAX + LOADED_MARGIN)
    assert second != first
    log = run.output()
    assert log_entries(log, r"fork failed: .*(Resource temporarily unavailable|EAGAIN|"
                            r"Errno 11)"), "the failure is logged with its cause"
    gaps = intervals(in_window)
    print(f"{len(in_window)} fork attempts in {window + began - in_window[0]:.1f}s; "
          f"gaps {[f'{gap:.3f}' for gap in gaps]}")
    # at once, then 0.1, 0.2, 0.4, 0.4...: about ten in 3 s. A busy loop makes thousands
    assert 3 <= len(in_window) <= 2 + window / BACKOFF_MAX + 4, in_window
    for n, gap in enumerate(gaps, start=1):
        assert gap >= expected_delay(n) - STAMP_SLACK, f"retry {n} after {gap:.3f}s"
    run.kill("QUIT")
    assert run.wait() == 0
