"""Hooks for the e2e tests (``hooks = "hook_module"``): each writes one line to the
marker file ``hooks`` in ``$PREFORK_E2E_DIR``; ``HOOK_FAIL=after_fork`` makes that hook
raise."""

from __future__ import annotations

import os

from jobs import mark


def _fail(name: str) -> None:
    if os.environ.get("HOOK_FAIL") == name:
        raise RuntimeError(f"{name} broke on purpose")


def when_ready(master) -> None:
    mark("hooks", f"when_ready {master.name} {master.state} {len(master.pids())} "
                  f"in={os.getpid()}")


def before_fork(master, worker) -> None:
    mark("hooks", f"before_fork {worker.pool} {worker.slot} {worker.pid} "
                  f"{master.name} in={os.getpid()}")


def after_fork(worker) -> None:
    mark("hooks", f"after_fork {worker.group} {worker.slot} {worker.pid} in={os.getpid()}")
    _fail("after_fork")


def before_exit(worker) -> None:
    mark("hooks", f"before_exit {worker.group} {worker.slot} {worker.pid} in={os.getpid()}")


def on_worker_exit(master, worker, outcome) -> None:
    mark("hooks", f"on_worker_exit {worker.pool} {worker.slot} {worker.pid} "
                  f"{outcome.outcome} {outcome.status} {outcome.perform} in={os.getpid()}")
