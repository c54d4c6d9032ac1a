"""Signal names and numbers, and the self-pipe that records every delivery."""

from __future__ import annotations

import os
import signal

import pytest

from prefork.core.signals import Sig
from prefork.posix.signal_pipe import SignalWakeup, sig_of, signum


@pytest.mark.parametrize("sig", list(Sig))
def test_every_core_signal_maps_to_the_platform_and_back(sig: Sig) -> None:
    number = signum(sig)
    assert number == getattr(signal, f"SIG{sig.value}")
    assert sig_of(number) is sig


def test_a_signal_the_core_does_not_know_maps_to_none() -> None:
    assert sig_of(signal.SIGSEGV) is None


def test_each_delivery_is_recorded_in_order_and_handlers_are_restored() -> None:
    before = signal.getsignal(signal.SIGUSR1)
    wakeup = SignalWakeup((Sig.USR1, Sig.USR2))
    wakeup.install()
    try:
        os.kill(os.getpid(), signal.SIGUSR1)
        os.kill(os.getpid(), signal.SIGUSR2)
        os.kill(os.getpid(), signal.SIGUSR1)
        assert wakeup.received() == [Sig.USR1, Sig.USR2, Sig.USR1]
        assert wakeup.received() == [], "each delivery is handed over once"
    finally:
        wakeup.restore()
        wakeup.close()
    assert signal.getsignal(signal.SIGUSR1) == before


def test_a_new_child_gets_default_handlers_no_wakeup_fd_and_no_pipe() -> None:
    wakeup = SignalWakeup((Sig.USR1, Sig.USR2))
    wakeup.install()
    try:
        read_fd = wakeup.read_fd
        pid = os.fork()
        if pid == 0:  # checked in the child, which says how it went in its exit code
            code = 1
            try:
                wakeup.reset_in_child()
                closed = True
                try:
                    os.fstat(read_fd)
                    closed = False
                except OSError:
                    pass
                ok = (signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL
                      and signal.getsignal(signal.SIGUSR2) is signal.SIG_DFL
                      and signal.set_wakeup_fd(-1) == -1 and closed)
                code = 0 if ok else 1
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        wakeup.restore()
        wakeup.close()
