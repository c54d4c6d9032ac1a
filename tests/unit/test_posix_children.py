"""The master's children in a new worker: the parent's pidfds are closed, nothing else."""

from __future__ import annotations

import os

import pytest

from prefork.posix.children import HAVE_PIDFD, Child, Children, _runs


def test_sorted_numbers_make_inclusive_runs() -> None:
    assert _runs([]) == []
    assert _runs([7]) == [(7, 7)]
    assert _runs([3, 4, 5, 9, 10, 12]) == [(3, 5), (9, 10), (12, 12)]


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


@pytest.mark.skipif(not HAVE_PIDFD, reason="no pidfd on this kernel")
def test_a_new_worker_closes_every_pidfd_of_the_master_and_keeps_other_files() -> None:
    pidfds = [os.pidfd_open(os.getpid()) for _ in range(3)]
    kept = os.open(os.devnull, os.O_RDONLY)  # a file of the job's, between the pidfds
    pidfds += [os.pidfd_open(os.getpid()) for _ in range(2)]
    children = Children()
    for number, fd in enumerate(pidfds, start=1):
        children.live[number] = Child(number, fd)
    children.live[99] = Child(99, None)  # a child without a pidfd (an old kernel)
    try:
        children.close_in_child()
        assert [fd for fd in pidfds if _is_open(fd)] == []
        assert _is_open(kept)
        assert children.live == {}
    finally:
        os.close(kept)
        for fd in pidfds:
            if _is_open(fd):
                os.close(fd)
