"""What the loop sleeps in: ``epoll`` where the system has it, ``poll`` elsewhere.

The master waits on one pidfd per worker, the signal pipe and the notify pipe. ``poll``
hands the kernel the whole list at every call and the kernel looks at each fd: with
1024 workers that is about 80 us of every wake-up, for one exited worker. ``epoll`` keeps
the list in the kernel and answers with the ready fds only, so a wake-up costs what
happened, not the size of the pool. The answers are the same either way: a list of
``(fd, events)`` of the readable fds.
"""

from __future__ import annotations

import select


class Poller:
    """Polling with ``poll``'s interface: ``register``, ``modify``, ``unregister``,
    ``poll(timeout_ms)`` (``None``: no timeout)."""

    def __init__(self) -> None:
        epoll = getattr(select, "epoll", None)
        self.kind = "epoll" if epoll is not None else "poll"
        self._epoll = epoll() if epoll is not None else None  # close-on-exec
        self._poll = select.poll() if epoll is None else None

    def register(self, fd: int, events: int = select.POLLIN) -> None:
        """Watch ``fd`` for ``events`` (``select.POLLIN`` or ``POLLOUT``: on Linux the
        same bits as ``EPOLLIN`` and ``EPOLLOUT``)."""
        if self._epoll is not None:
            self._epoll.register(fd, events)
        else:
            self._poll.register(fd, events)  # type: ignore[union-attr]

    def modify(self, fd: int, events: int) -> None:
        """Watch ``fd`` for ``events`` instead (a connection with a reply to write)."""
        if self._epoll is not None:
            self._epoll.modify(fd, events)
        else:
            self._poll.modify(fd, events)  # type: ignore[union-attr]

    def unregister(self, fd: int) -> None:
        if self._epoll is not None:
            self._epoll.unregister(fd)
        else:
            self._poll.unregister(fd)  # type: ignore[union-attr]

    def poll(self, timeout_ms: int | None) -> list[tuple[int, int]]:
        if self._epoll is not None:
            return self._epoll.poll(-1 if timeout_ms is None else timeout_ms / 1000)
        return self._poll.poll(timeout_ms)  # type: ignore[union-attr]

    def fileno(self) -> int | None:
        """The epoll instance's fd (``None`` for ``poll``, which holds none)."""
        return self._epoll.fileno() if self._epoll is not None else None

    def close(self) -> None:
        if self._epoll is not None:
            self._epoll.close()
