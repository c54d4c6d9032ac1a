"""Where a respawn's time goes: timestamps at each step, taken from outside prefork.

``BENCH_TRACE=1`` makes ``bench/jobs.py`` call ``install()`` before it starts the master:
it wraps, in that process only, the few functions a respawn passes through, and each
wrapper notes ``time.monotonic()`` under a label. Nothing of this is in prefork itself, so
an ordinary run pays nothing for it. A process keeps its notes in memory and writes them
in one ``os.write`` (``trace <pid> <t> <label>`` lines, like the other report lines)
at a moment that is not measured: the master at the end of each loop turn, a worker once
it has told the master it is ready. Each note costs about a microsecond.

The steps, in the order a respawn takes them (``bench/run.py``'s ``breakdown`` turns them
into durations):

master  ``woke``         poll() returned (the dead worker's pidfd, or the signal pipe)
        ``reaped``       waitpid() and the scoreboard's release are done
        ``collected``    the turn's events are collected (signals read, every worker's
                         scoreboard slot looked at): the core is handed them now
        ``decided``      the core has handled the event: the ``Spawn`` is carried out now
        ``fork``         os.fork() is called (gc.freeze and the signal mask are done)
        ``forked``       os.fork() returned in the master
        ``answered``     the master's share of the fork and its ``Forked`` event are done
worker  ``child``        os.fork() returned in the child
        ``become``       its process group is made: the worker's own code begins
        ``runtime``      the master's machinery is dropped, the worker's made
        ``handlers``     its signal handlers are installed
        ``watched``      its parent-death signal is set
        ``setup``        the job's setup() is called (the ready stamp follows at once)
        ``idle``         the worker marked itself idle on the scoreboard and is about to
                         write the notify pipe (its first word to the master)
"""

from __future__ import annotations

import os
import time
from typing import Any

_NOTES: list[str] = []
_FD = int(os.environ.get("BENCH_FD", "-1"))


def note(label: str) -> None:
    _NOTES.append(f"trace {os.getpid()} {time.monotonic()!r} {label}\n")


def flush() -> None:
    if _NOTES:
        data = "".join(_NOTES).encode()
        _NOTES.clear()
        os.write(_FD, data)


class _Poller:
    """A select.poll object that notes when poll() returns with something ready."""

    def __init__(self, poller: Any) -> None:
        self._poller = poller

    def __getattr__(self, name: str) -> Any:  # register, unregister, close...
        return getattr(self._poller, name)

    def poll(self, *args: Any) -> Any:
        ready = self._poller.poll(*args)
        if ready:
            note("woke")
        return ready


def _wrap(owner: Any, name: str, before: str | None = None, after: str | None = None,
          then: Any = None) -> None:
    original = getattr(owner, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if before:
            note(before)
        try:
            return original(*args, **kwargs)
        finally:
            if after:
                note(after)
            if then is not None:
                then()

    setattr(owner, name, wrapper)


def install() -> None:
    """Wrap the steps of a respawn (see the module's docstring), in this process."""
    from prefork.child import runtime
    from prefork.posix import children, loop

    init = loop.PosixLoop.__init__

    def traced_init(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        self.poller = _Poller(self.poller)

    loop.PosixLoop.__init__ = traced_init  # type: ignore[method-assign]
    _wrap(loop.PosixLoop, "turn", then=flush)
    _wrap(children.Children, "reap", after="reaped")
    _wrap(loop.PosixLoop, "_process", before="collected")
    _wrap(loop.PosixLoop, "_spawn", before="decided")
    _wrap(loop.PosixLoop, "_answer_forks", after="answered")
    _wrap(loop.PosixLoop, "_become_worker", before="become")
    _wrap(runtime.Runtime, "__init__", after="runtime")
    _wrap(runtime.Runtime, "_install_handlers", after="handlers")
    _wrap(runtime.Runtime, "_watch_master", after="watched")
    _wrap(runtime.Runtime, "_notify_master", before="idle", then=flush)

    if os.environ.get("BENCH_TRACE_EFFECTS") == "1":  # each effect the master carries out
        carry_out = loop.PosixLoop._carry_out

        def traced_carry_out(self: Any, effect: Any) -> None:
            note(f"effect-{type(effect).__name__}")
            carry_out(self, effect)

        loop.PosixLoop._carry_out = traced_carry_out  # type: ignore[method-assign]
    fork = os.fork

    def traced_fork() -> int:
        note("fork")
        pid = fork()
        if pid == 0:
            _NOTES.clear()  # the master's notes are the master's
            note("child")
        else:
            note("forked")
        return pid

    os.fork = traced_fork
