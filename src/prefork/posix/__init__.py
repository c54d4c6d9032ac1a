"""The POSIX adapter: the only code of prefork that forks, signals, waits and touches files.

It turns the operating system into the core's events (signals, reaped children,
scoreboard readings, the passing of time) and carries out the core's effects (fork,
kill, log, set the title, wake up at a time, exit). It decides nothing: every action it
takes was asked for by the core (``prefork.core``), and every fact it learns goes to the
core as an event.

- ``signals``: the self-pipe, handler install and restore, ``Sig`` <-> signal numbers.
- ``children``: fork, one pidfd per child, reaping, signals that cannot hit a stranger.
- ``scoreboard``: the shared memory workers write and the master reads.
- ``loop``: the event loop around ``Supervisor.handle``.
- ``process``: titles, parent-death signal, pid files, log files.
"""

from prefork.posix.loop import Handoff, PosixLoop

__all__ = ["Handoff", "PosixLoop"]
