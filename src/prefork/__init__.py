"""prefork: supervise a pool of pre-forked worker processes.

A master process forks workers that each run a job (``setup()`` once, then ``perform()``
over and over) and keeps the pool at its size through crashes, signals and reloads. The
master and every worker are finite-state machines in :mod:`prefork.core`, a pure core
that takes events in and hands effects out; a POSIX adapter does the system calls.

    import prefork

    class Mailer(prefork.Job):
        def perform(self): ...

    prefork.Master(Mailer, workers=4).run()
"""

__version__ = "0.1.0"

from prefork.api import Master, Pool
from prefork.core.errors import ConfigError, CoreError
from prefork.core.settings import GroupConfig, PoolConfig
from prefork.core.signals import Sig
from prefork.interrupts import PerformTimeout, Shutdown
from prefork.job import IDLE, Job, WorkerContext

__all__ = [
    "IDLE",
    "ConfigError",
    "CoreError",
    "GroupConfig",
    "Job",
    "Master",
    "PerformTimeout",
    "Pool",
    "PoolConfig",
    "Shutdown",
    "Sig",
    "WorkerContext",
    "__version__",
]
