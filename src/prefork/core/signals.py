"""The signal names the core speaks.

Signal *numbers* differ between platforms (USR1 is 10 on Linux and 30 on macOS), and the
core must not import :mod:`signal`, so it names signals symbolically. The POSIX adapter
maps ``signal.Signals`` to and from these members by name.
"""

from __future__ import annotations

from enum import StrEnum


class Sig(StrEnum):
    """A signal, by its POSIX name without the ``SIG`` prefix."""

    QUIT = "QUIT"
    TERM = "TERM"
    INT = "INT"
    HUP = "HUP"
    WINCH = "WINCH"
    TTIN = "TTIN"
    TTOU = "TTOU"
    USR1 = "USR1"
    USR2 = "USR2"
    CONT = "CONT"
    CHLD = "CHLD"
    KILL = "KILL"
    ABRT = "ABRT"

    def __repr__(self) -> str:
        return self.value
