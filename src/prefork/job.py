"""What a job is, and what it sees of the worker that runs it.

A job is any object with ``perform()`` (and, if it likes, ``setup()`` and
``teardown()``); subclassing ``Job`` only documents that and gives empty defaults. A
plain function is a perform; one that takes an argument is handed the worker's context,
so preforker's ``while master.wants_me_alive?`` loop becomes::

    def consume(worker):
        while not worker.stopping:
            ...

During setup, perform and teardown, ``job.worker`` is that context: ``slot``, ``group``,
``pid``, ``stopping`` (poll it in long loops) and ``heartbeat()`` (call it in long
performs, so that ``timeout`` does not fire).

A perform that found no work returns ``IDLE`` (``prefork.IDLE``): it counts neither
toward ``max_performs`` nor as busy time, and the worker's scoreboard slot says ``idle``
until a perform does some work again.
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

from prefork.core.errors import ConfigError


class _Idle:
    """The type of ``IDLE``: one instance, compared by identity."""

    __slots__ = ()
    _instance: _Idle | None = None

    def __new__(cls) -> _Idle:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "prefork.IDLE"

    def __reduce__(self) -> str:
        return "IDLE"  # pickled and unpickled, it stays the one IDLE

    def __bool__(self) -> bool:
        return False


IDLE = _Idle()
"""What a perform returns when it found no work (an empty queue poll).

Such a perform is not counted toward ``max_performs`` and is not busy time: the worker
writes ``idle`` into its scoreboard slot after it, and keeps it there through the empty
performs that follow, until one returns anything else. A perform that then finds work
should call ``self.worker.heartbeat()`` as it starts it: that marks the slot busy again
(and starts the ``timeout``), so the master sees the truth while the work runs.
"""


class Flags:
    """What the worker's signal handlers tell its loop; one object, no locks.

    ``pending`` is the one thing the perform loop checks per perform: any handler sets
    it, and the loop looks at the other flags only then.
    """

    __slots__ = ("hold", "orphaned", "pending", "quick", "reopen", "stop")

    def __init__(self) -> None:
        self.pending = False
        self.stop = False
        self.quick = False  # a quick stop (TERM, INT): no teardown
        self.hold = False
        self.reopen = False
        self.orphaned = False


class _HeartbeatView(Protocol):
    def __setitem__(self, index: int, value: float) -> None: ...


class WorkerContext:
    """The worker, as its job sees it (``job.worker``).

    ``pid`` is the worker's; with the forking strategy each perform runs in a child
    whose own pid is ``os.getpid()``.
    """

    __slots__ = ("_busy", "_clock", "_flags", "_heartbeat", "_state", "group", "idling", "pid",
                 "slot")

    def __init__(
        self,
        slot: int,
        group: str,
        pid: int,
        flags: Flags | None = None,
        heartbeat_view: _HeartbeatView | None = None,
        state_view: _HeartbeatView | None = None,
        busy: int = 0,
    ) -> None:
        self.slot = slot
        self.group = group
        self.pid = pid
        self._flags = flags if flags is not None else Flags()
        self._heartbeat = heartbeat_view
        self._state = state_view  # the slot's state, and the value that says "performing"
        self._busy = busy
        # set by the perform loop while performs return IDLE (the slot says idle)
        self.idling = False
        self._clock = time.monotonic

    def __repr__(self) -> str:
        return f"<WorkerContext group={self.group} slot={self.slot} pid={self.pid}>"

    @property
    def stopping(self) -> bool:
        """True once a graceful stop was asked (QUIT, or the master is gone).

        A perform that loops for long should poll it and return: the stop waits for the
        perform to end.
        """
        return self._flags.stop

    def heartbeat(self) -> None:
        """Say "still alive, and busy": the perform ``timeout`` counts from the latest
        heartbeat, and a slot left ``idle`` by performs that returned ``IDLE`` says
        ``performing`` again.

        One store into shared memory (two after an idle stretch); call it as often as
        you like.
        """
        if self._heartbeat is not None:
            self._heartbeat[0] = self._clock()
        if self.idling:
            self.idling = False
            if self._state is not None:
                self._state[0] = self._busy


class Job:
    """Base class of jobs: override ``perform``; ``setup`` and ``teardown`` if needed.

    ``setup()`` runs once per worker process, after the fork; ``perform()`` runs over
    and over (each return is one unit of work done); ``teardown()`` runs once when the
    worker stops gracefully. ``self.worker`` is the worker's context while they run.
    """

    worker: WorkerContext | None = None

    def setup(self) -> None:
        """Once per worker process, after the fork: open connections here."""

    def perform(self) -> None:
        """One unit of work."""
        raise NotImplementedError(f"{type(self).__name__} must define perform()")

    def teardown(self) -> None:
        """Once, on a graceful stop (QUIT, max_performs reached, the master gone)."""


class BoundJob(NamedTuple):
    """A job's calls, ready to run in a worker.

    ``take`` and ``settle`` are optional (None when the job has none) and used by the
    ``forking`` strategy only: ``take()`` runs in the worker before each perform child is
    forked, to take the unit of work the child will perform (the job keeps it on itself,
    and the child inherits it); when it returns ``IDLE`` no child is forked. After the
    child is reaped, ``settle(pid, status)`` runs in the worker with the child's pid and
    wait status (0: it succeeded), so that the worker can account for work the child took with it
    (RQ's work-horse model: the job is taken and accounted for by the worker, and run in
    the child).
    """

    setup: Callable[[], object]
    perform: Callable[[], object]
    teardown: Callable[[], object]
    take: Callable[[], object] | None = None
    settle: Callable[[int, int], object] | None = None


def _nothing() -> None:
    return None


def _wants_context(function: Callable[..., object]) -> bool:
    """Whether ``function`` takes a required positional argument (the worker context)."""
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):  # some builtins have no signature
        return False
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return any(
        p.kind in positional and p.default is inspect.Parameter.empty for p in parameters
    ) or any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in parameters)


class JobSpec(NamedTuple):
    """A validated job: ``bind(context)`` gives its calls inside a worker (immutable).

    A ``NamedTuple`` rather than a frozen dataclass: as immutable, and its class costs
    ~0.15 ms to make at import where a frozen dataclass's costs ~1 ms (Python 3.11).
    """

    target: Any
    takes_context: bool
    is_function: bool

    @property
    def name(self) -> str:
        target = self.target if self.is_function else type(self.target)
        return getattr(target, "__qualname__", None) or repr(target)

    def bind(self, context: WorkerContext) -> BoundJob:
        if self.is_function:
            function = self.target
            if self.takes_context:
                return BoundJob(_nothing, functools.partial(function, context), _nothing)
            return BoundJob(_nothing, function, _nothing)
        job = self.target
        # a slotted or frozen object gets no context (plain try, not contextlib.suppress:
        # this runs in each new worker, where each object made is a page copied)
        try:  # noqa: SIM105
            job.worker = context
        except (AttributeError, TypeError):
            pass
        return BoundJob(
            getattr(job, "setup", None) or _nothing,
            job.perform,
            getattr(job, "teardown", None) or _nothing,
            getattr(job, "take", None),
            getattr(job, "settle", None),
        )


def job_spec(job: object) -> JobSpec:
    """Validate ``job``: a Job class (instantiated here), an object with ``perform()``,
    or a function. Anything else raises ``ConfigError`` naming it.
    """
    if isinstance(job, type):
        try:
            job = job()
        except Exception as error:
            raise ConfigError(
                "job", job, f"could not be instantiated without arguments ({error})"
            ) from None
    perform = getattr(job, "perform", None)
    if perform is not None:
        if not callable(perform):
            raise ConfigError("job", job, "has a perform attribute that is not callable")
        for name in ("setup", "teardown", "take", "settle"):
            method = getattr(job, name, None)
            if method is not None and not callable(method):
                raise ConfigError("job", job, f"has a {name} attribute that is not callable")
        return JobSpec(job, takes_context=False, is_function=False)
    if callable(job):
        return JobSpec(job, takes_context=_wants_context(job), is_function=True)
    raise ConfigError("job", job, "needs a perform() method, or must be a function")
