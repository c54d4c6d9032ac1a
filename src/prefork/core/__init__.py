"""The pure core of prefork: events in, effects out, no system calls.

``Supervisor(config).handle(event)`` returns the effects the adapter must carry out.
The master and worker machines are ``transitions`` tables in ``master.py`` and
``worker.py``; specs/ is their human-readable (and test-checked) twin.
"""

from prefork.core.effects import (
    Effect,
    Exit,
    Kill,
    Log,
    ReopenLogs,
    SetTitle,
    Spawn,
    WakeAt,
)
from prefork.core.errors import ConfigError, CoreError
from prefork.core.events import (
    Boot,
    ChildExited,
    Event,
    Forked,
    ForkFailed,
    Observed,
    Reload,
    Scale,
    Signal,
    StartWorker,
    StopAll,
    StopWorker,
    Tick,
)
from prefork.core.settings import DEFAULT_GROUP, GroupConfig, PoolConfig
from prefork.core.signals import Sig
from prefork.core.supervisor import (
    MASTER_TRANSITIONS,
    MASTER_TRIGGERS,
    SIGNAL_TRIGGERS,
    MasterState,
    Supervisor,
    backoff_delay,
)
from prefork.core.worker_machine import WORKER_TRANSITIONS, WORKER_TRIGGERS, Worker, WorkerState

__all__ = [
    "DEFAULT_GROUP", "MASTER_TRANSITIONS", "MASTER_TRIGGERS", "SIGNAL_TRIGGERS",
    "WORKER_TRANSITIONS", "WORKER_TRIGGERS", "Boot", "ChildExited", "ConfigError",
    "CoreError", "Effect", "Event", "Exit", "ForkFailed", "Forked", "GroupConfig", "Kill",
    "Log", "MasterState", "Observed", "PoolConfig", "Reload", "ReopenLogs", "Scale",
    "SetTitle", "Sig", "Signal", "Spawn", "StartWorker", "StopAll", "StopWorker",
    "Supervisor", "Tick", "WakeAt", "Worker", "WorkerState", "backoff_delay",
]
