"""The user's hooks, with their context: who the master is, which worker, how it ended.

Five hooks, each a function (none is required):

=================================== ================================================
``when_ready(master)``              in the master, once the first workers are forked
``before_fork(master, worker)``     in the master, before each fork (``worker.pid`` is
                                    ``None``: there is no process yet)
``after_fork(worker)``              in each worker, before ``setup()``; raising fails
                                    the worker's start, as a failing ``setup()`` does
``before_exit(worker)``             in each worker, as it exits
``on_worker_exit(master, worker,    in the master, once a worker is reaped
outcome)``
=================================== ================================================

``master`` is a ``MasterView``: the master's name and a ``Snapshot`` of the pool taken
when the hook runs, read-only; never the ``Master`` object (the loop that runs the hooks
knows nothing of it). In the master, ``worker`` is a ``WorkerInfo`` (pool, slot, pid);
in a worker it is the worker context (``prefork.WorkerContext``: ``group``, ``slot``,
``pid``...). ``outcome`` is an ``Exit``: the class of the end (the core's ``Outcome``:
``crashed``, ``retired``, ``timed out``...), the wait status as ``ChildExited`` gives it
(the exit code, or minus the signal), and ``perform``, the number of the perform the
worker was in when it died (``None`` if it was not in one), so that a queue can fail or
put back the work that perform held.

Hooks come from ``Master(...)``'s keyword arguments and from a module named by the
``hooks`` option (``hooks = "myapp.hooks"`` in a config file, ``--hooks``), whose
functions named after the hooks are used; a keyword argument wins over the module's
function of the same name.

The hooks of earlier versions keep working where telling them apart is cheap: an
``on_worker_exit`` that takes two arguments is called as before, ``(pid, status)``, and
``when_ready``'s ``master`` has the ``Snapshot``'s ``pids()``, ``workers``, ``state`` and
``targets``, so ``when_ready(snapshot)`` reads it unchanged. ``before_fork(group, slot)``
became ``before_fork(master, worker)``: ``worker.pool`` and ``worker.slot``.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from prefork.core.errors import ConfigError
from prefork.core.outcomes import Outcome
from prefork.core.snapshot import Snapshot, WorkerView

HOOK_NAMES = ("when_ready", "before_fork", "after_fork", "before_exit", "on_worker_exit")
MASTER_HOOK_NAMES = ("when_ready", "before_fork", "on_worker_exit")


class WorkerInfo(NamedTuple):
    """A worker as the master's hooks see it: its pool, its slot, its pid (``None``
    before the fork)."""

    pool: str
    slot: int
    pid: int | None

    @property
    def group(self) -> str:
        """The pool's name (the word the worker context uses)."""
        return self.pool


class Exit(NamedTuple):
    """How a worker ended: ``outcome`` (``Outcome.CRASHED``...), ``status`` (the exit
    code, or minus the number of the signal that killed it), and ``perform``, the
    number of the perform it was in (1 for its first), or ``None``."""

    outcome: Outcome
    status: int
    perform: int | None


class MasterView:
    """The master as its hooks see it: its ``name`` and a snapshot of the pool taken
    when the hook was called (``state``, ``targets``, ``workers``, ``pids()``)."""

    __slots__ = ("name", "snapshot")

    def __init__(self, name: str, snapshot: Snapshot) -> None:
        self.name = name
        self.snapshot = snapshot

    @property
    def state(self) -> str:
        return self.snapshot.state

    @property
    def targets(self) -> dict[str, int]:
        return dict(self.snapshot.targets)

    @property
    def workers(self) -> tuple[WorkerView, ...]:
        return self.snapshot.workers

    def pids(self, *, stopping: bool | None = None) -> list[int]:
        return self.snapshot.pids(stopping=stopping)

    def __repr__(self) -> str:
        return (f"<prefork master {self.name!r} {self.state}: "
                f"{len(self.snapshot.workers)} workers>")


def collect(given: Mapping[str, Callable[..., Any]], module: str | None) -> dict[str, Any]:
    """The hooks in force, by name: those ``given`` (keyword arguments), and the
    functions of ``module`` named after the others. A module that does not import, or
    a hook there that is not callable, raises ``ConfigError`` naming it."""
    hooks: dict[str, Any] = {}
    if module:
        try:
            loaded = importlib.import_module(module)
        except Exception as error:
            raise ConfigError("hooks", module, f"cannot be imported ({type(error).__name__}: "
                                               f"{error})") from None
        for name in HOOK_NAMES:
            hook = getattr(loaded, name, None)
            if hook is None:
                continue
            if not callable(hook):
                raise ConfigError("hooks", module, f"{module}.{name} is not a function")
            hooks[name] = hook
    hooks.update({name: hook for name, hook in given.items() if hook is not None})
    return hooks


def _takes(hook: Callable[..., Any], count: int) -> bool:
    """Whether ``hook`` takes exactly ``count`` positional arguments (no ``*args``)."""
    try:
        parameters = inspect.signature(hook).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = [p for p in parameters
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    varargs = any(p.kind is p.VAR_POSITIONAL for p in parameters)
    return len(positional) == count and not varargs


def master_hooks(hooks: Mapping[str, Callable[..., Any]], name: str,
                 snapshot: Callable[[], Snapshot]) -> dict[str, Callable[..., Any]]:
    """The master's hooks as the loop calls them, with the core's ``RunHook`` args:
    ``when_ready()``, ``before_fork(group, slot)``, ``on_worker_exit(pid, status, group,
    slot, outcome, perform)``; each given its context (a ``MasterView`` made when it
    runs, a ``WorkerInfo``, an ``Exit``)."""
    adapted: dict[str, Callable[..., Any]] = {}

    def view() -> MasterView:
        return MasterView(name, snapshot())

    when_ready = hooks.get("when_ready")
    if when_ready is not None:
        adapted["when_ready"] = lambda *_: when_ready(view())
    before_fork = hooks.get("before_fork")
    if before_fork is not None:
        adapted["before_fork"] = lambda group, slot, *_: before_fork(
            view(), WorkerInfo(group, slot, None))
    on_exit = hooks.get("on_worker_exit")
    if on_exit is not None:
        if _takes(on_exit, 2):  # the earlier on_worker_exit(pid, status)
            adapted["on_worker_exit"] = lambda pid, status, *_: on_exit(pid, status)
        else:
            def on_worker_exit(pid: int, status: int, group: str = "", slot: int = -1,
                               outcome: Outcome = Outcome.CRASHED,
                               perform: int | None = None, *_: Any) -> None:
                on_exit(view(), WorkerInfo(group, slot, pid), Exit(outcome, status, perform))

            adapted["on_worker_exit"] = on_worker_exit
    return adapted
