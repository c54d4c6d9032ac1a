"""The exit guards of the worker table, each on its own, as specs/worker.md defines them.

In the table the guards come in conjunctions (``killed_by_signal and not
exited_cleanly``), where some statuses never reach one guard; here each is held to its
own sentence of the spec, so that a guard cannot drift while its rows still happen to pass.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from prefork.core.outcomes import exited_cleanly, killed_by_signal, reached_max_performs


def worker(*, set_up: bool = True, performs: int = 0, max_performs: int | None = None):
    return SimpleNamespace(
        set_up=set_up, settings=SimpleNamespace(max_performs=max_performs),
        count_at_exit=lambda final: performs if final is None else final,
    )


@pytest.mark.parametrize(("status", "killed"), [(-9, True), (-1, True), (0, False),
                                                (1, False)])
def test_killed_by_signal_is_a_negative_status(status: int, killed: bool) -> None:
    assert killed_by_signal(worker(), status) is killed


def test_exited_cleanly_is_status_zero_once_ready_or_after_a_perform() -> None:
    assert exited_cleanly(worker(), 0)
    assert not exited_cleanly(worker(), 1)
    assert not exited_cleanly(worker(set_up=False), 0)
    assert exited_cleanly(worker(set_up=False), 0, performs=1)


def test_reached_max_performs_counts_the_final_performs() -> None:
    assert not reached_max_performs(worker(performs=5), 0)
    assert reached_max_performs(worker(performs=5, max_performs=5), 0)
    assert not reached_max_performs(worker(performs=5, max_performs=6), 0)
    assert reached_max_performs(worker(max_performs=6), 0, performs=6)
