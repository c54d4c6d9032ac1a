"""Recycling by memory in the core: the limit is a strict bound, and the words of a
recycling tell the figure and the limit as a person reads them."""

from __future__ import annotations

import pytest

from prefork.core import Boot, CoreError, Forked, Observed, PoolConfig, Supervisor, WorkerState
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
