"""Recycling by memory in the core: the limit is a strict bound, and the words of a
recycling tell the figure and the limit as a person reads them."""

from __future__ import annotations

import pytest

from prefork.core import (
    Boot,
    ChildExited,
    CoreError,
    Forked,
    Kill,
    Log,
    Observed,
    PoolConfig,
    Sig,
    Supervisor,
    WorkerState,
)
from prefork.core.events import MemorySampled
from prefork.core.recycling import describe_memory


@pytest.mark.parametrize(("mib", "limit", "words"), [
    (212.4, 200, "uses 212 MiB USS, over max_memory 200 MiB"),
    # rounded, the figure would read as the limit itself: a decimal more says it is over
    (200.4, 200, "uses 200.4 MiB USS, over max_memory 200 MiB"),
    (201.0, 200, "uses 201 MiB USS, over max_memory 200 MiB"),
])
def test_the_figure_reads_as_over_the_limit(mib: float, limit: int, words: str) -> None:
    assert describe_memory(mib, limit) == words


def _one_worker(max_memory: int) -> Supervisor:
    supervisor = Supervisor(PoolConfig.of(workers=1, max_memory=max_memory))
    supervisor.handle(Boot(at=0.0))
    supervisor.handle(Forked("default", 0, 101, at=0.0))
    supervisor.handle(Observed(101, WorkerState.IDLE, at=0.5))
    return supervisor


def test_a_worker_at_its_limit_is_not_over_it() -> None:
    supervisor = _one_worker(100)
    assert supervisor.handle(MemorySampled(101, 100.0, at=1.0)) == []
    assert supervisor.snapshot().workers[0].state == "idle"
    supervisor.handle(MemorySampled(101, 100.5, at=3.0))
    assert supervisor.snapshot().workers[0].state == "retiring"


def test_a_sample_of_a_pid_the_pool_does_not_have_is_an_error() -> None:
    supervisor = _one_worker(100)
    with pytest.raises(CoreError, match=r"MemorySampled\(.*pid=999.*\) names no live worker"):
        supervisor.handle(MemorySampled(999, 5.0, at=1.0))


def _recycling_line(effects: list) -> tuple[str, dict]:
    [line] = [(e.message, dict(e.fields)) for e in effects
              if isinstance(e, Log) and dict(e.fields)["event"] == "recycling"]
    return line


_WORKS_ON = ": recycling (it works on until its replacement is ready)"
_WORKER = "worker group=default slot=0 pid=101 "


@pytest.mark.parametrize(("report", "why", "uss_mib"), [
    # the master's sample, and the worker's own report with its figure and without one
    (MemorySampled(101, 120.0, at=1.0), "uses 120 MiB USS, over max_memory 100 MiB", 120.0),
    (Observed(101, WorkerState.IDLE, performs=4, recycle="max_memory", memory_mib=130.2,
              at=1.0), "uses 130 MiB USS, over max_memory 100 MiB", 130.2),
    (Observed(101, WorkerState.IDLE, performs=4, recycle="max_memory", at=1.0),
     "is over max_memory 100 MiB", None),
])
def test_a_recycling_line_says_why_with_the_figure_in_its_fields(report, why, uss_mib) -> None:
    message, fields = _recycling_line(_one_worker(100).handle(report))
    assert message == _WORKER + why + _WORKS_ON
    assert (fields["reason"], fields["uss_mib"]) == ("max_memory", uss_mib)
    assert fields["performs"] == getattr(report, "performs", 0)


def test_a_recycling_at_max_performs_names_the_limit_and_its_jitter() -> None:
    supervisor = Supervisor(PoolConfig.of(workers=1, max_performs=5, max_performs_jitter=2))
    supervisor.handle(Boot(at=0.0))
    supervisor.handle(Forked("default", 0, 101, at=0.0))
    message, fields = _recycling_line(supervisor.handle(
        Observed(101, WorkerState.IDLE, performs=6, recycle="max_performs", at=1.0)))
    assert message == _WORKER + "did 6 performs (max_performs 5 + up to 2 jitter)" + _WORKS_ON
    assert (fields["reason"], fields["uss_mib"], fields["performs"]) == (
        "max_performs", None, 6)


def test_a_worker_growing_inside_one_perform_is_told_to_quit_with_its_figures() -> None:
    supervisor = Supervisor(PoolConfig.of(workers=1, max_memory=100, graceful_timeout=7))
    supervisor.handle(Boot(at=0.0))
    supervisor.handle(Forked("default", 0, 101, at=0.0))
    supervisor.handle(Observed(101, WorkerState.PERFORMING, performs=1, heartbeat_at=1.0,
                               at=1.0))
    supervisor.handle(MemorySampled(101, 120.0, at=2.0))  # recycling: its replacement
    supervisor.handle(Forked("default", 0, 102, at=2.0))
    effects = supervisor.handle(MemorySampled(101, 130.0, at=4.0))
    [(message, fields)] = [(e.message, dict(e.fields)) for e in effects
                           if isinstance(e, Log) and e.level == "warning"]
    assert message == (_WORKER + "uses 130 MiB USS, over max_memory 100 MiB and still "
                       "growing inside one perform: QUIT, then KILL after graceful_timeout "
                       "(7s)")
    assert (fields["event"], fields["uss_mib"], fields["limit_mib"]) == (
        "memory_runaway", 130.0, 100)
    assert Kill(101, Sig.QUIT) in effects


def test_a_recycled_workers_exit_line_names_the_reason() -> None:
    supervisor = Supervisor(PoolConfig.of(workers=1, max_performs=3))
    supervisor.handle(Boot(at=0.0))
    supervisor.handle(Forked("default", 0, 101, at=0.0))
    supervisor.handle(Observed(101, WorkerState.IDLE, performs=3, recycle="max_performs",
                               at=1.0))
    supervisor.handle(Forked("default", 0, 102, at=1.0))
    supervisor.handle(Observed(102, WorkerState.IDLE, at=1.5))  # 101 is told to stop
    effects = supervisor.handle(ChildExited(101, 0, performs=4, at=2.0))
    [fields] = [dict(e.fields) for e in effects
                if isinstance(e, Log) and dict(e.fields)["event"] == "exited"]
    assert (fields["outcome"], fields["reason"], fields["performs"]) == (
        "retired", "max_performs", 4)
