"""The loop's poller: epoll where there is one (a wake-up costs the same with a thousand
pidfds as with ten), poll elsewhere; the same answers either way."""

from __future__ import annotations

import os
import select

import pytest

from prefork.posix.poller import Poller

pytestmark = pytest.mark.timeout(10)


@pytest.fixture(params=["epoll", "poll"])
def poller(request, monkeypatch):  # type: ignore[no-untyped-def]
    if request.param == "epoll" and not hasattr(select, "epoll"):
        pytest.skip("no epoll here")
    if request.param == "poll":
        monkeypatch.delattr(select, "epoll", raising=False)
    made = Poller()
    assert made.kind == request.param
    yield made
    made.close()


def test_it_answers_the_readable_fds_only(poller) -> None:  # type: ignore[no-untyped-def]
    pipes = [os.pipe() for _ in range(3)]
    try:
        for read_fd, _ in pipes:
            poller.register(read_fd)
        assert poller.poll(0) == []
        os.write(pipes[1][1], b"x")
        assert [fd for fd, _ in poller.poll(None)] == [pipes[1][0]]
        poller.unregister(pipes[1][0])
        assert poller.poll(0) == []
    finally:
        for fds in pipes:
            for fd in fds:
                os.close(fd)


def test_a_timeout_in_milliseconds_returns_empty(poller) -> None:  # type: ignore[no-untyped-def]
    read_fd, write_fd = os.pipe()
    try:
        poller.register(read_fd)
        assert poller.poll(1) == []
    finally:
        os.close(read_fd)
        os.close(write_fd)


def test_close_in_child_drops_the_fd_of_epoll(poller) -> None:  # type: ignore[no-untyped-def]
    """A worker has no use for the master's poller: its fd is closed after the fork (a
    plain poll object holds none)."""
    fd = poller.fileno()
    poller.close()
    if fd is not None:
        with pytest.raises(OSError):
            os.fstat(fd)
