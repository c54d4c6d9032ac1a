"""Stops that lose nothing: QUIT with performs in flight, TERM to every process, reports."""

from __future__ import annotations

import contextlib
import os
import re
import signal

import pytest
from e2e_support import descendants, wait_for
from fault_support import cleaned_up_on_failure, log_entries, stamps

STRATEGIES = ["simple", "forking"]


def performs_in_flight(run, workers: list[int]) -> None:
    """Wait until every worker is inside a perform (started more than it ended)."""
    def busy(worker: int) -> bool:
        return len(stamps(run, f"starts.{worker}")) > len(stamps(run, f"ends.{worker}"))

    wait_for(lambda: all(busy(worker) for worker in workers), 10, "a perform in every worker")


def assert_nothing_lost(run, workers: list[int]) -> None:
    """Every perform that started ended, and every worker ran its teardown."""
    for worker in workers:
        started, ended = stamps(run, f"starts.{worker}"), stamps(run, f"ends.{worker}")
        assert started, f"worker {worker} performed"
        assert len(ended) == len(started), f"worker {worker}: a perform was cut short"
        assert not stamps(run, f"interrupted.{worker}")
        assert stamps(run, f"teardown.{worker}"), f"worker {worker} ran its teardown"


@pytest.mark.timeout(30)
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_quit_lets_every_perform_in_flight_finish(pool, strategy) -> None:
    run = pool("fault_jobs:Steady", "--workers", "3", "--strategy", strategy,
               PERFORM_SECONDS="0.7")
    workers = run.workers_up(3)
    performs_in_flight(run, workers)
    run.kill("QUIT")
    assert run.wait() == 0
    assert_nothing_lost(run, workers)
    assert not re.search(r"crashed|KILL", run.output())


def term_every_process(run) -> None:
    """TERM to every process of the pool at once, as systemd's control-group kill does.

    Not ``kill -TERM -PGID``: each worker leads its own process group, so a group kill
    would reach the master alone. systemd (``KillMode=control-group``) signals every
    process of the unit's cgroup, whatever its group: so does this, master first.
    """
    for pid in [run.pid, *descendants(run.pid)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_term_to_every_process_with_graceful_term_loses_nothing(pool, strategy) -> None:
    run = pool("fault_jobs:Steady", "--workers", "2", "--strategy", strategy,
               "--graceful-term", "true", PERFORM_SECONDS="1")
    with cleaned_up_on_failure(run, set()):
        workers = run.workers_up(2)
        performs_in_flight(run, workers)
        term_every_process(run)
        assert run.wait() == 0
        assert_nothing_lost(run, workers)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_term_to_every_process_interrupts_performs_and_runs_finally(pool, strategy) -> None:
    run = pool("fault_jobs:Steady", "--workers", "2", "--strategy", strategy,
               PERFORM_SECONDS="30")
    with cleaned_up_on_failure(run, set()):
        workers = run.workers_up(2)
        performs_in_flight(run, workers)
        term_every_process(run)
        assert run.wait() == 0
        import prefork  # here, not at the top: a broken package fails this test alone

        shutdown = getattr(prefork, "Shutdown", None)
        assert shutdown is not None, "prefork.Shutdown exists"
        assert issubclass(shutdown, BaseException) and not issubclass(shutdown, Exception)
        for worker in workers:
            assert not stamps(run, f"ends.{worker}"), "the perform was interrupted"
            [(_, _, name)] = stamps(run, f"interrupted.{worker}")
            assert name == "Shutdown", f"the perform was interrupted by {name}"
            assert stamps(run, f"finally.{worker}"), "its finally block ran"


@pytest.mark.timeout(30)
def test_a_stop_ends_with_one_shutdown_report(pool) -> None:
    run = pool("fault_jobs:Steady", "--workers", "3", PERFORM_SECONDS="0.5")
    workers = run.workers_up(3)
    performs_in_flight(run, workers)
    run.kill("QUIT")
    assert run.wait() == 0
    master_lines = [m.group(0) for _, _, pid, m in log_entries(run.output(), r".+")
                    if pid == run.pid]
    report = master_lines[-1].lower()
    # what the issue asks of the line; its wording is the builder's to choose
    for word in ("graceful", "killed", "finished", "interrupted", "exit"):
        assert word in report, f"the last line of the master names {word!r}: {report}"
    assert re.search(r"\b3\b", report), "three workers stopped gracefully"


@pytest.mark.timeout(30)
def test_a_worker_exiting_0_on_its_own_is_a_retirement(pool) -> None:
    run = pool("fault_jobs:ExitZero", "--workers", "1")
    with cleaned_up_on_failure(run, set()):
        [worker] = run.workers_up(1)
        run.expect(rf"pid={worker} \w+ -> dead")
        wait_for(lambda: len(list(run.tmp_path.glob("setup.*"))) >= 2, 10, "a replacement")
        run.kill("TERM")
        assert run.wait() == 0
        about = [(level, m.group(0)) for _, level, _, m in
                 log_entries(run.output(), rf"worker \S+ \S+ pid={worker} (?!.*->).*")]
        assert about, "a line says how the worker ended"
        for level, line in about:
            assert level in ("INFO", "DEBUG") and "crash" not in line, line
