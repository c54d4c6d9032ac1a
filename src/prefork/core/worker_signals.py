"""The signals the master sends one worker: the worker rows' callbacks that emit ``Kill``.

A soft signal (QUIT for a graceful stop, TERM for a quick one) remembers which it was and
sets the kill deadline; a quick stop may overtake a graceful one without giving the
worker longer than it had; KILL is sent once, says why, and clears the deadlines. Every
``Kill`` names a pid the core forked and has not reaped (``forked_pid``). The methods run
on the worker's model (this class is one of its bases).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from prefork.core.effects import Kill, Log
from prefork.core.signals import Sig

if TYPE_CHECKING:
    from prefork.core.context import MachineContext
    from prefork.core.settings import GroupConfig


class SignalsSent:
    """The callbacks of the worker rows that signal the worker."""

    pid: int | None
    settings: GroupConfig
    context: MachineContext
    stop_signal: Sig | None
    kill_at: float | None
    timeout_at: float | None
    killed_for: str | None
    interrupted: bool
    busy: Any
    label: str
    fields: Any  # the worker's: the structured fields of its log lines

    def send_soft(self, signo: Sig, grace: float) -> None:
        self.stop_signal = signo
        self.kill_at = self.context.now + grace
        self.context.emit(Kill(self.forked_pid(), signo))

    def send_quit(self) -> None:
        self.send_soft(Sig.QUIT, self.settings.graceful_timeout)

    def send_term(self) -> None:
        self.interrupted = self.interrupted or self.busy
        self.send_soft(Sig.TERM, self.settings.kill_timeout)

    def overtake_with_term(self) -> None:
        """A quick stop after a graceful one: TERM now, and KILL no later than before."""
        earlier = self.kill_at  # not None: told_to_quit guards this row
        self.send_term()
        self.kill_at = min(self.context.now + self.settings.kill_timeout, earlier)

    def send_kill(self) -> None:
        self.timeout_at = self.kill_at = None
        if self.killed_for is None:
            quit_ = self.stop_signal is Sig.QUIT
            self.killed_for = "graceful_timeout" if quit_ else "kill_timeout"
        self.interrupted = self.interrupted or self.busy
        self.context.emit(Log("warning", f"worker {self.label} did not stop in time; KILL",
                              self.fields("killed", reason=self.killed_for)))
        self.context.emit(Kill(self.forked_pid(), Sig.KILL))

    def forward_signal(self, signo: Sig) -> None:
        self.context.emit(Kill(self.forked_pid(), signo))

    def forked_pid(self) -> int:
        """The pid to signal: the supervisor never acts on a worker before ``Forked``."""
        assert self.pid is not None, f"{self.label}: signalled before Forked"
        return self.pid
