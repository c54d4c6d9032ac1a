"""Recycling with real processes: by work done (max_performs with its jitter) and by
memory (max_memory), without a dip in the pool's working workers.

The master's log is the record: every worker that comes up (``spawning -> idle`` or
``performing``), is recycled (``-> retiring``), is told to stop (``-> stopping``) or dies
(``-> dead``) is one line. Replaying it gives the pool's working workers (up and not told
to stop, retiring ones included) at every moment.
"""

from __future__ import annotations

import re

import pytest
from e2e_support import alive, wait_for

pytestmark = pytest.mark.timeout(60)

LINE = re.compile(r"worker group=(\S+) slot=(\d+) pid=(\d+) (\w+) -> (\w+) \((\w+)\)")


def working_counts(log: str) -> list[int]:
    """How many workers were working (up, not told to stop) after each line that changed
    it, replaying the master's transition lines."""
    working: set[int] = set()
    counts = []
    for _pool, _slot, pid, before, after, _trigger in LINE.findall(log):
        if before == "spawning" and after in ("idle", "performing"):
            working.add(int(pid))
        elif after in ("stopping", "dead"):
            working.discard(int(pid))
        else:
            continue
        counts.append(len(working))
    return counts


def replaced_first(log: str) -> list[str]:
    """For each recycled worker told to stop: whether a newer worker of its slot had come
    up after it began retiring (the lines that say otherwise)."""
    retiring: dict[int, tuple[str, int]] = {}  # pid -> (slot, index of its retiring line)
    came_up: list[tuple[str, int, int]] = []  # (slot, pid, line index)
    wrong = []
    for index, (pool, slot, pid, before, after, trigger) in enumerate(LINE.findall(log)):
        key, pid_ = f"{pool}.{slot}", int(pid)
        if before == "spawning" and after in ("idle", "performing"):
            came_up.append((key, pid_, index))
        elif after == "retiring":
            retiring[pid_] = (key, index)
        elif before == "retiring" and after == "stopping" and trigger == "stop_requested":
            key, since = retiring[pid_]
            if not any(k == key and i > since and p != pid_ for k, p, i in came_up):
                wrong.append(f"pid {pid_} of {key} stopped before its replacement was up")
    return wrong


def test_max_performs_with_jitter_recycles_at_different_counts_without_a_dip(
        prefork_run) -> None:
    pool = prefork_run("recycling_jobs:Counted", "--workers", "3", "--max-performs", "20",
                       "--max-performs-jitter", "20", PERFORM_SECONDS="0.02")
    first = pool.workers_up(3)
    asks = [int(pool.expect(r"did (\d+) performs \(max_performs 20 \+ \d+ of jitter 20\): "
                            r"asking for a replacement").group(1)) for _ in range(6)]
    pool.expect(r"retired \(recycled: max_performs\) as asked \(QUIT; exit status 0\)")
    pool.kill("QUIT")
    assert pool.wait() == 0
    log = pool.output()
    assert all(20 <= n <= 40 for n in asks), asks
    assert len(set(asks)) > 1, f"each worker draws its own limit: {asks}"
    assert not replaced_first(log)
    counts = working_counts(log.split("(quit_received)")[0])
    assert min(counts[2:]) >= 3, f"the pool dipped below 3 working workers: {counts}"
    for pid in first:  # the first workers were recycled gracefully: teardown ran
        assert pool.marker_lines(f"teardown.{pid}")
        assert not alive(pid)
    assert "crashed" not in log and "KILL" not in log


def test_a_job_that_leaks_memory_is_recycled_by_max_memory(prefork_run) -> None:
    pool = prefork_run("recycling_jobs:Leaky", "--workers", "1", "--max-memory", "60",
                       LEAK_MIB="4", PERFORM_SECONDS="0.05")
    [leaky] = pool.workers_up(1)
    asked = pool.expect(rf"worker group=default slot=0 pid={leaky} uses (\d+) MiB USS, "
                        r"over max_memory 60 MiB: recycling")
    assert int(asked.group(1)) > 60
    [successor] = pool.workers_up(1)
    pool.expect(rf"pid={leaky} retiring -> stopping \(stop_requested\)")
    pool.expect(rf"pid={leaky} retired \(recycled: max_memory\) as asked \(QUIT; exit "
                r"status 0\)")
    wait_for(lambda: pool.marker_lines(f"ends.{successor}"), 10, "the successor performs")
    pool.kill("QUIT")
    assert pool.wait() == 0
    log = pool.output()
    assert successor != leaky
    assert pool.marker_lines(f"teardown.{leaky}"), "recycled gracefully: teardown ran"
    assert not replaced_first(log)
    assert "KILL" not in log


def test_a_worker_stuck_growing_inside_a_perform_is_quit_then_killed(prefork_run) -> None:
    pool = prefork_run("recycling_jobs:Balloon", "--workers", "1", "--max-memory", "60",
                       "--graceful-timeout", "2", LEAK_MIB="5", SLOW_SETUP="30")
    [stuck] = pool.workers_up(1)
    pool.expect(rf"pid={stuck} uses \d+ MiB USS, over max_memory 60 MiB: recycling")
    growing = pool.expect(rf"pid={stuck} uses (\d+) MiB USS, over max_memory 60 MiB and "
                          r"still growing inside one perform: QUIT, then KILL after "
                          r"graceful_timeout \(2s\)")
    assert int(growing.group(1)) > 60
    pool.expect(rf"pid={stuck} did not stop in time; KILL")
    pool.expect(rf"pid={stuck} stopping -> dead \(exited\)")
    wait_for(lambda: not alive(stuck), 5, "the stuck worker to be gone")
    assert not pool.marker_lines(f"teardown.{stuck}"), "it never left its perform"
    pool.kill("TERM")
    assert pool.wait() == 0
