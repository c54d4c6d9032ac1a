"""The health port: ``GET /livez``, ``/readyz`` and ``/metrics`` over plain HTTP/1.0.

A tiny responder (``health_bind = "127.0.0.1:9101"``), served from the master's loop like
the control socket (``serving``): one request per connection, read until the blank line
that ends its head (8 KiB at most, 2 seconds at most), answered, closed. No framework:
the three answers are a few lines each.

- ``/livez``: 200 while the loop turns (a loop that does not turn answers nothing, and
  the probe's own timeout says so);
- ``/readyz``: 200 when the master is ready, 503 with the reasons otherwise: booting,
  short of workers, a crash loop, and at once when a stop signal arrived (the master is
  draining or terminating: readiness is the first thing a stop takes away);
- ``/metrics``: the Prometheus text format (``metrics``).

Anything else is 404; a method other than GET or HEAD is 405; a request that is not
HTTP is 400.
"""

from __future__ import annotations

import socket
from typing import Any

from prefork.core.errors import ConfigError
from prefork.core.readiness import not_ready_because
from prefork.posix import metrics
from prefork.posix.serving import Connection, Server, bind

_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
            413: "Request Entity Too Large", 500: "Internal Server Error",
            503: "Service Unavailable"}
_TEXT = "text/plain; charset=utf-8"


def response(code: int, body: str, content_type: str = _TEXT, head: bool = False) -> bytes:
    data = body.encode()
    lines = [f"HTTP/1.0 {code} {_REASONS[code]}", f"Content-Type: {content_type}",
             f"Content-Length: {len(data)}", "Connection: close", "", ""]
    return "\r\n".join(lines).encode("ascii") + (b"" if head else data)


class HealthServer(Server):
    """The master's HTTP health port (see the module's doc)."""

    max_request = 8192

    def __init__(self, listener: socket.socket, logger: Any) -> None:
        super().__init__(listener, logger)

    def complete(self, inbox: bytearray) -> bool:
        return b"\r\n\r\n" in inbox or b"\n\n" in inbox

    def too_large(self) -> bytes:
        return response(413, "request too large\n")

    def internal_error(self) -> bytes:
        return response(500, "internal error (see the master's log)\n")

    def answer(self, connection: Connection) -> bytes:
        words = bytes(connection.inbox).split(b"\n", 1)[0].decode("latin-1").split()
        if len(words) != 3 or not words[2].startswith("HTTP/"):
            return response(400, "bad request\n")
        method, path = words[0], words[1].split("?", 1)[0]
        if method not in ("GET", "HEAD"):
            return response(405, "only GET\n")
        head = method == "HEAD"
        view = self.view
        assert view is not None, "the health server is not attached to a loop"
        if path == "/livez":
            return response(200, "live\n", head=head)
        if path == "/readyz":
            reasons = not_ready_because(view.snapshot())
            if reasons:
                return response(503, "not ready: " + "; ".join(reasons) + "\n", head=head)
            return response(200, "ready\n", head=head)
        if path == "/metrics":
            body = metrics.render(view.snapshot(), view.loop_lag(), view.durations())
            return response(200, body, metrics.CONTENT_TYPE, head=head)
        return response(404, "not found (try /livez, /readyz or /metrics)\n", head=head)


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) as a pair; ``ValueError`` when it is not."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{text!r} is not HOST:PORT")
    return host.strip("[]") or "0.0.0.0", int(port)


def open_health(address: str, logger: Any) -> HealthServer:
    """Listen on ``address`` (``health_bind``); ``ConfigError`` when it cannot be bound."""
    try:
        host, port = parse_address(address)
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (ValueError, OSError) as error:
        raise ConfigError("health_bind", address, f"is not an address to listen on ({error})"
                          ) from None
    family, kind, proto, _, where = infos[0]
    listener = socket.socket(family, kind, proto)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    bind(listener, where, "health_bind", address)
    listener.listen(16)
    bound = listener.getsockname()
    logger.info(f"health endpoints: http://{address.rpartition(':')[0]}:{bound[1]}/"
                "{livez,readyz,metrics}")
    return HealthServer(listener, logger)
