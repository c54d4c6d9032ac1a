"""Signals: the names the core speaks, and handlers that only record and wake.

The core names signals symbolically (``Sig``) because signal numbers differ between
platforms; this module maps them to ``signal.Signals`` by name, once.

``SignalWakeup`` is the master's self-pipe. CPython's C-level signal handler writes the
number of every delivered signal, one byte per delivery, into the file descriptor given
to ``signal.set_wakeup_fd``, whatever the interpreter is doing at that moment. So the
byte stream *is* the record: the Python-level handlers do nothing at all, the loop's
``poll`` wakes because the pipe became readable, and the loop turns each byte into one
``Signal`` event. No signal is lost while the loop is busy (the bytes wait in the pipe),
and no work ever happens inside a handler.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterable
from types import FrameType
from typing import Any

from prefork.core.signals import Sig

# The C functions under signal.signal and signal.pthread_sigmask: the public ones turn
# every number they return (the old handler, the old mask) into an enum member, a lookup
# that raises and catches a ValueError when the old handler is a function. The adapter
# calls them between two forks and in every new child, where each page they touch is a
# page copied, and it only ever needs the numbers.
try:
    import _signal as _c_signal  # type: ignore[import-not-found,unused-ignore]
except ImportError:  # pragma: no cover - an interpreter without CPython's _signal
    _c_signal = signal
raw_signal: Callable[[int, Any], Any] = _c_signal.signal
raw_pthread_sigmask: Callable[[int, Iterable[int]], set[int]] = _c_signal.pthread_sigmask
RAW_SIG_DFL: int = _c_signal.SIG_DFL  # the plain int, which raw_signal wants

# the signals the master handles (DESIGN.md, "Signals")
MASTER_SIGNALS: tuple[Sig, ...] = (
    Sig.QUIT, Sig.TERM, Sig.INT, Sig.HUP, Sig.WINCH, Sig.TTIN, Sig.TTOU,
    Sig.USR1, Sig.USR2, Sig.CONT, Sig.CHLD,
)

_TO_SIGNUM: dict[Sig, int] = {
    sig: int(getattr(signal.Signals, f"SIG{sig.value}")) for sig in Sig
}
_FROM_SIGNUM: dict[int, Sig] = {number: sig for sig, number in _TO_SIGNUM.items()}


def signum(sig: Sig) -> int:
    """The platform's number for ``sig``."""
    return _TO_SIGNUM[sig]


def sig_of(number: int) -> Sig | None:
    """The core's name for signal ``number`` (``None`` for a signal the core never meets)."""
    return _FROM_SIGNUM.get(number)


def nonblocking_pipe() -> tuple[int, int]:
    """A pipe whose two ends never block (and are closed on exec, as Python makes them)."""
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)
    os.set_blocking(write_end, False)
    return read_end, write_end


def drain(fd: int) -> bytes:
    """Everything waiting in the non-blocking ``fd`` (empty when nothing is, or at EOF)."""
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 4096)
        except (BlockingIOError, InterruptedError):
            break
        if not chunk:
            break
        chunks.append(chunk)
        if len(chunk) < 4096:
            break
    return b"".join(chunks)


def _record(signo: int, frame: FrameType | None) -> None:
    """The Python-level handler: nothing to do, the wakeup byte is the record."""


class SignalWakeup:
    """The master's signal handlers and self-pipe.

    ``install`` must run in the main thread (Python delivers signals there only);
    ``restore`` puts back what was there before, so a program that embeds a ``Master``
    gets its own handlers back after ``run()``.
    """

    def __init__(self, signals: Iterable[Sig] = MASTER_SIGNALS) -> None:
        self.signals = tuple(signals)
        self.read_fd, self.write_fd = nonblocking_pipe()
        self._previous_handlers: dict[int, object] = {}
        self._previous_fd: int | None = None

    def install(self) -> None:
        self._previous_fd = signal.set_wakeup_fd(self.write_fd, warn_on_full_buffer=False)
        for sig in self.signals:
            number = signum(sig)
            self._previous_handlers[number] = signal.signal(number, _record)

    def restore(self) -> None:
        """Put back the handlers and wakeup fd that were there before ``install``."""
        for number, handler in self._previous_handlers.items():
            # None: the handler was not set from Python; the default is the best guess
            signal.signal(number, signal.SIG_DFL if handler is None else handler)  # type: ignore[arg-type]
        self._previous_handlers.clear()
        if self._previous_fd is not None:
            signal.set_wakeup_fd(self._previous_fd)
            self._previous_fd = None

    def received(self) -> list[Sig]:
        """The signals delivered since the last call, in order, one per delivery."""
        return [sig for sig in map(sig_of, drain(self.read_fd)) if sig is not None]

    def reset_in_child(self) -> None:
        """In a freshly forked worker: default handlers, no wakeup fd, no pipe."""
        signal.set_wakeup_fd(-1)
        for sig in self.signals:
            raw_signal(_TO_SIGNUM[sig], RAW_SIG_DFL)
        self._previous_handlers.clear()
        self.close()

    def close(self) -> None:
        # try rather than contextlib.suppress: this runs in every new worker, where each
        # object made is a page copied
        for fd in (self.read_fd, self.write_fd):
            try:  # noqa: SIM105
                os.close(fd)
            except OSError:
                pass
        self.read_fd = self.write_fd = -1
