"""The pure core of prefork: events in, effects out, no system calls.

``Supervisor(config).handle(event)`` returns the effects the adapter must carry out.
The master and worker machines are ``transitions`` tables in ``master_machine.py`` and
``worker_machine.py``; the roster (``roster.py``) holds the workers, the restart policy
(``restarts.py``) says what failures cost, and ``supervisor.py`` routes between them.
specs/ is the tables' human-readable (and test-checked) twin.
"""

from prefork.core.effects import (
    Effect,
    Exit,
    Kill,
    Log,
    Notify,
    ReadConfig,
    ReopenLogs,
    Reply,
    RunHook,
    SetTitle,
    Spawn,
    WakeAt,
)
from prefork.core.errors import ConfigError, CoreError
from prefork.core.events import (
    Boot,
    ChildExited,
    ConfigLoaded,
    ConfigRejected,
    Event,
    Forked,
    ForkFailed,
    MemorySampled,
    Observed,
    Reload,
    Scale,
    Signal,
    StartWorker,
    Status,
    StopAll,
    StopWorker,
    Tick,
)
from prefork.core.master_machine import (
    MASTER_TRANSITIONS,
    MASTER_TRIGGERS,
    SIGNAL_TRIGGERS,
    MasterState,
)
from prefork.core.outcomes import Outcome
from prefork.core.restarts import backoff_delay
from prefork.core.settings import DEFAULT_GROUP, GroupConfig, PoolConfig
from prefork.core.signals import Sig
from prefork.core.supervisor import Supervisor
from prefork.core.worker_machine import (
    WORKER_TRANSITIONS,
    WORKER_TRIGGERS,
    Worker,
    WorkerState,
)

__all__ = [
    "DEFAULT_GROUP", "MASTER_TRANSITIONS", "MASTER_TRIGGERS", "SIGNAL_TRIGGERS",
    "WORKER_TRANSITIONS", "WORKER_TRIGGERS", "Boot", "ChildExited", "ConfigError",
    "ConfigLoaded", "ConfigRejected", "CoreError", "Effect", "Event", "Exit", "ForkFailed",
    "Forked", "GroupConfig", "Kill", "Log", "MasterState", "MemorySampled", "Notify",
    "Observed", "Outcome",
    "PoolConfig", "ReadConfig", "Reload", "ReopenLogs", "Reply", "RunHook", "Scale",
    "SetTitle", "Sig", "Signal", "Spawn", "StartWorker", "Status", "StopAll", "StopWorker",
    "Supervisor", "Tick", "WakeAt", "Worker", "WorkerState", "backoff_delay",
]
