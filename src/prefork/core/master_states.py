"""The master machine's states, and the groups of them that its rows and rules name."""

from __future__ import annotations

from enum import StrEnum


class MasterState(StrEnum):
    """The states of the master machine (the names used in specs/master.md)."""

    BOOTING = "booting"
    RUNNING = "running"
    PAUSED = "paused"
    RELOADING = "reloading"
    DRAINING = "draining"
    TERMINATING = "terminating"
    STOPPED = "stopped"


M = MasterState
UP = [M.RUNNING, M.PAUSED, M.RELOADING]
LEAVING = [M.DRAINING, M.TERMINATING]
# it has workers to look after: every state but booting and stopped
SUPERVISING = [*UP, *LEAVING]
SPAWNING_STATES = [M.RUNNING, M.RELOADING]
NOT_SPAWNING = [M.BOOTING, M.PAUSED, *LEAVING]
