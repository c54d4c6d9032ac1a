"""Notifications to the service manager, against a real datagram socket this test binds."""

from __future__ import annotations

import logging
import os
import socket
import tempfile
from collections.abc import Iterator

import pytest

from prefork.posix.notify import Notifier, socket_address, watchdog_interval

LOG = logging.getLogger("test")


@pytest.fixture
def listener() -> Iterator[tuple[socket.socket, str]]:
    """A bound datagram socket at a short path (sun_path holds 108 bytes)."""
    directory = tempfile.mkdtemp(prefix="pfn-")
    path = os.path.join(directory, "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(5)
    yield sock, path
    sock.close()
    os.unlink(path)
    os.rmdir(directory)


def test_messages_reach_a_path_socket(listener) -> None:
    sock, path = listener
    environ = {"NOTIFY_SOCKET": path}
    notifier = Notifier.from_environ(LOG, environ)
    assert notifier is not None
    try:
        assert notifier.send("READY=1\nSTATUS=4 workers")
        assert sock.recv(4096) == b"READY=1\nSTATUS=4 workers"
    finally:
        notifier.close()
    assert environ == {}, "the variables are taken out for the workers' sake"


def test_messages_reach_an_abstract_socket() -> None:
    name = f"prefork-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(b"\0" + name.encode())
    sock.settimeout(5)
    notifier = Notifier.from_environ(LOG, {"NOTIFY_SOCKET": f"@{name}"})
    assert notifier is not None
    try:
        notifier.send("STOPPING=1")
        assert sock.recv(4096) == b"STOPPING=1"
    finally:
        notifier.close()
        sock.close()


def test_no_socket_no_notifier() -> None:
    assert Notifier.from_environ(LOG, {}) is None
    assert Notifier.from_environ(LOG, {"NOTIFY_SOCKET": ""}) is None


def test_an_unusable_address_is_said_once(caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="test"):
        assert Notifier.from_environ(LOG, {"NOTIFY_SOCKET": "vsock:2:1"}) is None
    assert "is not a socket path or @name" in caplog.text


def test_a_gone_manager_is_logged_once_and_not_fatal(caplog) -> None:
    notifier = Notifier("/nonexistent/notify", LOG)
    with caplog.at_level(logging.WARNING, logger="test"):
        assert not notifier.send("READY=1")
        assert not notifier.send("STATUS=x")
    notifier.close()
    assert caplog.text.count("cannot notify the service manager") == 1


def test_the_watchdog_pings_at_half_the_interval(listener) -> None:
    sock, path = listener
    notifier = Notifier.from_environ(
        LOG, {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "4000000"}, pid=os.getpid())
    assert notifier is not None and notifier.ping_every == 2.0
    try:
        notifier.start_watchdog(100.0)
        assert sock.recv(100) == b"WATCHDOG=1" and notifier.due == 102.0
        notifier.keepalive(101.9)
        notifier.keepalive(102.0)
        assert sock.recv(100) == b"WATCHDOG=1" and notifier.due == 104.0
        sock.setblocking(False)
        with pytest.raises(BlockingIOError):
            sock.recv(100)  # 101.9 sent nothing
    finally:
        notifier.close()


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"WATCHDOG_USEC": "3000000"}, 1.5),
        ({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": "42"}, 1.5),
        ({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": "43"}, None),  # another process's
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval(environ, expected) -> None:
    assert watchdog_interval(environ, pid=42) == expected


def test_socket_address() -> None:
    assert socket_address("/run/systemd/notify") == "/run/systemd/notify"
    assert socket_address("@abc") == b"\0abc"
    assert socket_address("@") is None
    assert socket_address("relative") is None
