"""One request, one reply, from the master's own loop: the endpoints' common part.

The control socket and the health port are served by the loop that supervises the
workers, without a thread (nothing to stop around ``fork``) and without ever blocking it:
every socket is non-blocking and in the loop's ``poll`` set. A connection is accepted,
read until its request is complete (or the peer shut its side), answered, and closed.
Two bounds keep a slow, silent or greedy client from holding supervision: a request may
be at most ``max_request`` bytes, and a connection lives at most ``timeout`` seconds from
its accept (the loop wakes for that deadline only while a connection is open: with no
client the endpoints cost no wake-up).

``Endpoints`` gathers the servers and is the loop's one handle on them: ``attach`` to its
poller, ``serve`` what ``poll`` found ready, ``wake_at`` for its next deadline,
``close_in_child`` in a freshly forked worker, ``close`` at the end.
"""

from __future__ import annotations

import contextlib
import select
import socket
from typing import Any

from prefork.core.errors import ConfigError

_READ_SIZE = 65536


def bind(listener: socket.socket, where: Any, option: str, value: object) -> None:
    """Bind a listening socket, or close it and refuse the option that named the place."""
    try:
        listener.bind(where)
    except OSError as error:
        listener.close()
        raise ConfigError(option, value, f"cannot be bound ({error.strerror})") from None


class Connection:
    """An accepted connection: what came in, what is left to send, and its deadline."""

    __slots__ = ("deadline", "inbox", "outbox", "peer", "sock")

    def __init__(self, sock: socket.socket, deadline: float, peer: Any) -> None:
        self.sock = sock
        self.deadline = deadline
        self.peer = peer
        self.inbox = bytearray()
        self.outbox: bytes | None = None  # set once answered


class Server:
    """A listening socket and how to answer its requests (subclasses say how).

    ``complete(inbox)``: whether the request is all in; ``answer(connection)``: the reply
    bytes (called once, when complete, at EOF, or at once from ``greet`` when the peer
    must be refused before it says anything).
    """

    max_request = 65536
    timeout = 2.0

    def __init__(self, listener: socket.socket, logger: Any) -> None:
        listener.setblocking(False)
        self.listener = listener
        self.logger = logger
        self.view: Any = None  # the loop's MasterView, given by Endpoints.attach

    def peer_of(self, sock: socket.socket, address: Any) -> Any:
        """Who connected (the UNIX socket reads its credentials)."""
        return address

    def greet(self, connection: Connection) -> bytes | None:
        """A reply before reading anything (a refusal), or ``None`` to read the request."""
        return None

    def complete(self, inbox: bytearray) -> bool:
        raise NotImplementedError

    def answer(self, connection: Connection) -> bytes:
        raise NotImplementedError

    def too_large(self) -> bytes:
        """The reply to a request over ``max_request`` bytes."""
        raise NotImplementedError

    def internal_error(self) -> bytes:
        """The reply when answering raised (the exception is logged)."""
        raise NotImplementedError

    def close(self) -> None:
        """Close the listening socket (in a worker too: its copy)."""
        with contextlib.suppress(OSError):
            self.listener.close()

    def release(self) -> None:
        """The master is leaving: close, and remove what it made (a socket file)."""
        self.close()


class Endpoints:
    """Every server of the master and their open connections, driven by the loop."""

    def __init__(self, servers: list[Server]) -> None:
        self.servers = {server.listener.fileno(): server for server in servers}
        self.connections: dict[int, tuple[Server, Connection]] = {}
        self._poller: Any = None

    def attach(self, poller: Any, view: Any) -> None:
        """Watch the listening sockets in the loop's ``poll`` set; ``view`` is what the
        servers may ask of the loop (``control.MasterView``)."""
        self._poller = poller
        for fd, server in self.servers.items():
            server.view = view
            poller.register(fd, select.POLLIN)

    @property
    def wake_at(self) -> float | None:
        """The earliest deadline of an open connection (``None``: none is open)."""
        return min((c.deadline for _, c in self.connections.values()), default=None)

    def serve(self, ready: set[int], now: float) -> None:
        """Accept, read and answer what ``poll`` found ready; drop connections past their
        deadline. Never blocks."""
        for fd in ready:
            if fd in self.servers:
                self._accept(self.servers[fd], now)
            elif fd in self.connections:
                self._step(*self.connections[fd])
        for fd, (_, connection) in list(self.connections.items()):
            if now >= connection.deadline:
                self._drop(fd)

    def _accept(self, server: Server, now: float) -> None:
        while True:
            try:
                sock, address = server.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:  # EMFILE, ECONNABORTED...: this one is lost
                server.logger.warning(f"cannot accept a connection: {error}")
                return
            sock.setblocking(False)
            connection = Connection(sock, now + server.timeout, server.peer_of(sock, address))
            self.connections[sock.fileno()] = (server, connection)
            self._poller.register(sock.fileno(), select.POLLIN)
            refusal = server.greet(connection)
            if refusal is not None:
                self._reply(server, connection, refusal)

    def _step(self, server: Server, connection: Connection) -> None:
        if connection.outbox is not None:
            self._send(connection)
            return
        try:
            data = connection.sock.recv(_READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._drop(connection.sock.fileno())
            return
        if not data and not connection.inbox:  # connected and left (a probe): no reply
            self._drop(connection.sock.fileno())
            return
        connection.inbox += data
        if len(connection.inbox) > server.max_request:
            self._reply(server, connection, server.too_large())
        elif not data or server.complete(connection.inbox):
            try:
                reply = server.answer(connection)
            except Exception:  # a bug of ours: logged, answered, and the loop goes on
                server.logger.exception("answering a request raised")
                reply = server.internal_error()
            self._reply(server, connection, reply)

    def _reply(self, server: Server, connection: Connection, reply: bytes) -> None:
        connection.outbox = reply
        fd = connection.sock.fileno()
        if fd in self.connections:
            self._poller.modify(fd, select.POLLOUT)
        self._send(connection)

    def _send(self, connection: Connection) -> None:
        fd = connection.sock.fileno()
        try:
            sent = connection.sock.send(connection.outbox or b"")
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # the peer is gone (EPIPE, ECONNRESET...): nobody to tell
            sent = len(connection.outbox or b"")
        connection.outbox = (connection.outbox or b"")[sent:]
        if not connection.outbox:
            self._drop(fd)

    def _drop(self, fd: int) -> None:
        entry = self.connections.pop(fd, None)
        if entry is None:
            return
        with contextlib.suppress(KeyError, ValueError):
            self._poller.unregister(fd)
        with contextlib.suppress(OSError):
            entry[1].sock.close()

    def close_in_child(self) -> None:
        """In a freshly forked worker: its copies of the sockets go (the master's stay
        open, and the socket file stays the master's)."""
        for server in self.servers.values():
            server.close()
        for _, connection in self.connections.values():
            with contextlib.suppress(OSError):
                connection.sock.close()

    def close(self) -> None:
        """The master is leaving: every connection and server closes."""
        for fd in list(self.connections):
            self._drop(fd)
        for fd, server in self.servers.items():
            if self._poller is not None:
                with contextlib.suppress(KeyError, ValueError):
                    self._poller.unregister(fd)
            server.release()

