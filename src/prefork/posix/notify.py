"""The service manager's notification socket (systemd's ``sd_notify`` protocol).

With ``Type=notify``, systemd hands the service ``NOTIFY_SOCKET``: the address of a
datagram socket (a path, or ``@name`` in the abstract namespace) to which the main
process sends newline-separated ``KEY=VALUE`` lines: ``READY=1``, ``RELOADING=1``,
``STOPPING=1``, ``STATUS=...``, ``WATCHDOG=1``. Nothing comes back. The protocol is
small enough to speak without a dependency.

The core decides *what* to say (its ``Notify`` effects); this module says it. What the
core cannot decide is the watchdog: with ``WatchdogSec=`` systemd sets ``WATCHDOG_USEC``
and kills a service that has not sent ``WATCHDOG=1`` within that time. The point is to
prove that the master's loop still turns, so the ping is sent from the loop itself, at
half the interval (as ``sd_watchdog_enabled(3)`` advises): a loop stuck in a hook or a
system call sends nothing, and systemd acts. That costs a wake-up per half interval,
and only when the watchdog is asked for; without ``NOTIFY_SOCKET`` nothing here runs.

The variables are taken out of the environment once read (``sd_notify``'s
``unset_environment``), so that the workers, and the programs their jobs start, do not
believe they are the service.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import MutableMapping
from typing import Any

SOCKET_VARIABLE = "NOTIFY_SOCKET"
WATCHDOG_USEC = "WATCHDOG_USEC"
WATCHDOG_PID = "WATCHDOG_PID"


def socket_address(text: str) -> str | bytes | None:
    """The address in ``NOTIFY_SOCKET``: a path, or ``@name`` for the abstract namespace
    (Linux), given to ``sendto`` as bytes with a leading NUL. ``None`` if unusable."""
    if text.startswith("@") and len(text) > 1:
        return b"\0" + text[1:].encode()
    if text.startswith("/"):
        return text
    return None  # vsock and other schemes are not spoken here


def watchdog_interval(environ: MutableMapping[str, str], pid: int) -> float | None:
    """Seconds between two ``WATCHDOG=1`` (half of ``WATCHDOG_USEC``), or ``None`` when
    no watchdog is asked of this process."""
    owner = environ.get(WATCHDOG_PID)
    if owner is not None and owner.strip() != str(pid):
        return None
    try:
        usec = int(environ.get(WATCHDOG_USEC, ""))
    except ValueError:
        return None
    return usec / 2 / 1_000_000 if usec > 0 else None


class Notifier:
    """Sends notifications to the service manager at ``address``; logs to ``logger``.

    ``ping_every`` (seconds) asks for a ``WATCHDOG=1`` that often: ``due`` says when the
    next one is due, ``keepalive(now)`` sends it when it is.
    """

    def __init__(self, address: str | bytes, logger: Any,
                 ping_every: float | None = None) -> None:
        self.address = address
        self.logger = logger
        self.ping_every = ping_every
        self.due: float | None = None
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self.sock.setblocking(False)
        self._failing = False

    @classmethod
    def from_environ(cls, logger: Any, environ: MutableMapping[str, str] | None = None,
                     pid: int | None = None) -> Notifier | None:
        """The notifier ``environ`` (default ``os.environ``) asks for, or ``None``; the
        variables are taken out of ``environ``."""
        environ = os.environ if environ is None else environ
        text = environ.pop(SOCKET_VARIABLE, None)
        interval = watchdog_interval(environ, os.getpid() if pid is None else pid)
        environ.pop(WATCHDOG_USEC, None)
        environ.pop(WATCHDOG_PID, None)
        if not text:
            return None
        address = socket_address(text)
        if address is None:
            logger.warning(f"{SOCKET_VARIABLE}={text!r} is not a socket path or @name: "
                           "the service manager is not notified")
            return None
        return cls(address, logger, interval)

    def send(self, message: str) -> bool:
        """Send ``message`` (``KEY=VALUE`` lines); whether it went.

        A failure is logged once, until a message goes again: the service manager may be
        restarting, and the pool must not care.
        """
        try:
            self.sock.sendto(message.encode(), self.address)
        except OSError as error:
            if not self._failing:
                self.logger.warning(f"cannot notify the service manager ({error.strerror}): "
                                    f"{message.splitlines()[0]}")
            self._failing = True
            return False
        self._failing = False
        return True

    def start_watchdog(self, now: float) -> None:
        """Send the first ``WATCHDOG=1`` and plan the next (no watchdog: nothing)."""
        if self.ping_every is not None:
            self.due = now
            self.keepalive(now)

    def keepalive(self, now: float) -> None:
        """Send ``WATCHDOG=1`` if it is due; plan the next one."""
        if self.due is None or now < self.due or self.ping_every is None:
            return
        self.send("WATCHDOG=1")
        self.due = now + self.ping_every

    def close(self) -> None:
        self.due = None
        with contextlib.suppress(OSError):
            self.sock.close()
