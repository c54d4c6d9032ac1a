"""The event loop: the operating system in, the core's effects out.

Theory of operation
-------------------

The loop owns everything the core must not touch: the self-pipe of signals, one pidfd
per worker, the scoreboard, a notify pipe the workers write when setup finishes, and the
write end of a "lifeline" pipe whose read end every worker holds (when the master dies
the kernel closes it, and each worker sees EOF).

Each turn of the loop sleeps in ``epoll`` (``poller.Poller``) until something happens
or until the earliest of the core's ``WakeAt`` and the next scoreboard scan, then
collects what happened and hands it to the core as events, in this order:

1. every reaped child: ``ChildExited``, with the final performs count of its slot.
   These go first so that the core knows a pid is gone before any
   other event of the turn could make it signal that pid;
2. each delivered signal, one ``Signal`` per delivery;
3. what changed on the scoreboard (``Observed``): in the slots of the workers that gave
   notice on the notify pipe (each writes its slot's index), or in every slot when the
   timed scan or a deadline of the core is due (or a notice may have been lost); so a
   wake-up costs what changed, not the size of the pool; and, for pools with
   ``max_memory``, the workers' memory every few seconds (``MemorySampled``,
   ``posix.memory``);
4. ``Tick(now)`` if the core's wake-up time has come.

For each event the core returns effects, which the loop carries out in order (but the
log lines of an event that forks, which wait for its forks, never for its signals). A
``Spawn`` forks at once; its answer (``Forked`` or ``ForkFailed``) is queued ahead of
every other event, which is the one promise the adapter makes to the core. A
``ReadConfig`` is answered the same way, at once and ahead of everything but the forks'
answers, with ``ConfigLoaded`` or ``ConfigRejected``.

The loop asks nothing of the public API. What needs the world outside it comes in as
plain callables at construction: ``worker_main`` (the body of a worker), ``read_config``
(read and validate a config file into a ``PoolConfig``, raising ``ConfigError``), the
``hooks`` table that ``RunHook`` effects name (a hook that raises is logged with its
traceback, never fatal), and ``reopen_logs``. A ``Reply`` goes to whoever asked with
``ask_status``.

Sleeping: with nothing to time, ``poll`` gets no timeout at all, so an idle pool costs
no wake-ups. Workers do not wake the master per perform; they write the scoreboard. So
when ``timeout`` is set, the loop also scans the scoreboard every ``timeout`` seconds:
that is how the core learns that a perform began, early enough to give its deadline to
the moment (the worker stamps the perform's start, and a scan within ``timeout`` of it
puts the core's deadline exactly at start + timeout). A pool that scales by its spare
workers is scanned every ``scale_interval`` (1 s by default) for the same reason: the
readings are how its rule learns that idle workers became busy. A scan reads each
worker's slot and hands the core only the readings that changed. A status request
(``ask_status``) reads every slot first, so that the snapshot has the counts of the moment.

Endpoints: the control socket and the health port (``posix.serving``), when given, are
sockets in the same poll set, served after the turn's events (a request reads the
scoreboard the turn just read); a command becomes the event its signal would be. They
add a wake-up only while a connection is open (its deadline), and a worker closes its
copies of their sockets right after the fork.

Forking: the master's signals are blocked around ``fork``, so the child starts with
them blocked; the worker unblocks them once its own handlers are in place, so a signal
sent to a brand-new worker waits for the right handler instead of meeting the default
action (or the master's handler, which would write into the master's self-pipe).

Forking a pool is a run of ``Spawn`` effects, and the master does as little as it can
between two forks: each fork shares every page of the master with the new child again,
so each page the master writes before the next fork is copied, once per fork. The rest
of a fork (the child's process group, pidfd and records, and the ``Forked`` answer)
waits until the effects of the event are carried out, and is done for all the children
at once: before anything else happens (no other event, reaping or signal comes first),
and even when carrying out an effect raised, so that no child goes unrecorded.
"""

from __future__ import annotations

import contextlib
import fcntl
import gc
import logging
import math
import os
import signal
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

from prefork.core import (
    Boot,
    ChildExited,
    ConfigError,
    ConfigLoaded,
    ConfigRejected,
    Effect,
    Event,
    Exit,
    Forked,
    ForkFailed,
    Kill,
    Log,
    Notify,
    Observed,
    PoolConfig,
    ReadConfig,
    ReopenLogs,
    Reply,
    RunHook,
    SetTitle,
    Sig,
    Signal,
    Spawn,
    Status,
    Supervisor,
    Tick,
    WakeAt,
    WorkerState,
)
from prefork.core.scaling import scales
from prefork.posix import process
from prefork.posix.children import Children
from prefork.posix.control import MasterView
from prefork.posix.memory import MemorySampler
from prefork.posix.poller import Poller
from prefork.posix.scoreboard import (
    EVERYONE,
    FRESH_READING,
    Durations,
    Reading,
    Scoreboard,
    Slot,
    noticed,
)
from prefork.posix.serving import Endpoints
from prefork.posix.signal_pipe import (
    MASTER_SIGNALS,
    SignalWakeup,
    drain,
    nonblocking_pipe,
    raw_pthread_sigmask,
    signum,
)

# what a worker must not meet with its default action before its own handlers exist
CHILD_BLOCKED_SIGNALS = frozenset(
    signum(sig) for sig in (*MASTER_SIGNALS, Sig.ABRT)
)
# with neither pidfds nor a SIGCHLD handler, nothing wakes the loop when a child exits
_FALLBACK_POLL = 0.05


class Handoff(NamedTuple):
    """What a freshly forked worker gets from the master (immutable).

    A ``NamedTuple`` rather than a frozen dataclass: as immutable, its class costs
    ~0.15 ms to make at import where a frozen dataclass's costs ~1 ms (Python 3.11), and
    each new worker makes one without a call to ``object.__setattr__`` per field.
    """

    group: str
    slot: int
    board_slot: Slot
    notify_fd: int
    lifeline_fd: int
    master_pid: int
    signal_mask: frozenset[int]


class _Worker:
    """The adapter's record of a worker: its scoreboard index and the last reading sent."""

    __slots__ = ("group", "index", "last", "pid", "slot")

    def __init__(self, pid: int, group: str, slot: int, index: int, last: Reading) -> None:
        self.pid = pid
        self.group = group
        self.slot = slot
        self.index = index
        self.last = last


def _pipe_capacity(fd: int) -> int:
    """How many bytes the pipe ``fd`` holds (Linux says; elsewhere, one page, the least a
    pipe holds: reading that much is taken as "notices may have been lost")."""
    try:
        return fcntl.fcntl(fd, fcntl.F_GETPIPE_SZ)  # type: ignore[attr-defined]
    except (AttributeError, OSError):
        return 4096


def _forks_first(effects: list[Effect]) -> list[Effect]:
    """The effects of one event in order, except that when the event forks, its log
    lines wait for its forks, but never for its signals: a respawn's lines (the death,
    the reason, the error) would otherwise hold the replacement's fork back by the time
    it takes to format and write them, while a line that says a signal is sent (a
    timeout's "dumping its stack") must come before what the signal makes the worker
    write. The lines keep their order among themselves; the other effects keep theirs."""
    if not any(isinstance(effect, Spawn) for effect in effects):
        return effects
    ordered: list[Effect] = []
    held: list[Effect] = []
    for effect in effects:
        if isinstance(effect, Log):
            held.append(effect)
            continue
        if isinstance(effect, Kill):
            ordered += held
            held = []
        ordered.append(effect)
    return ordered + held


def scan_interval(config: PoolConfig) -> float | None:
    """How often the loop must read the scoreboard: the shortest perform ``timeout`` of
    any group, and the ``scale_interval`` of any group that scales by its spare workers
    (None: neither, so no scan is needed). Nothing else tells the master that an idle
    worker became busy: a perform does not wake it."""
    every = [group.timeout for group in config.groups if group.timeout is not None]
    every += [group.scale_interval for group in config.groups if scales(group)]
    return min(every, default=None)


class PosixLoop:
    """The POSIX adapter around one ``Supervisor``.

    ``worker_main(spec)`` runs in each forked worker and returns its exit code.
    ``handle_signals=False`` (the API without ``run()``) installs no signal handlers and
    reaps only the pids it forked, so an embedding program keeps both to itself.
    ``read_config(path)`` reads a config file into a ``PoolConfig`` (raising
    ``ConfigError``); ``hooks`` maps a hook's name to the function ``RunHook`` runs.
    """

    def __init__(
        self,
        supervisor: Supervisor,
        worker_main: Callable[[Handoff], int],
        logger: Any,
        *,
        handle_signals: bool = True,
        set_titles: bool = True,
        reopen_logs: Callable[[], None] | None = None,
        hooks: Mapping[str, Callable[..., Any]] | None = None,
        read_config: Callable[[str], PoolConfig] | None = None,
        use_pidfd: bool | None = None,
        service: Any = None,
        endpoints: Endpoints | None = None,
    ) -> None:
        self.supervisor = supervisor
        # the master as a service (posix.service.Service): Notify goes there, and the
        # watchdog's pings are due at its wake_at
        self.service = service
        self.worker_main = worker_main
        self.logger = logger
        self.handle_signals = handle_signals
        self.set_titles = set_titles
        self.reopen_logs = reopen_logs
        self.hooks: Mapping[str, Callable[..., Any]] = hooks or {}
        self.read_config = read_config
        self.children = Children(use_pidfd)
        self.board = Scoreboard()
        self.signals: SignalWakeup | None = None
        self.notify_r, self.notify_w = nonblocking_pipe()
        self.lifeline_r, self.lifeline_w = nonblocking_pipe()
        self.poller = Poller()
        self.poller.register(self.notify_r)
        self._notify_capacity = _pipe_capacity(self.notify_w)
        self.workers: dict[int, _Worker] = {}
        self._by_index: dict[int, _Worker] = {}  # the same workers, by scoreboard index
        self.wake_at: float | None = None
        self.exit_code: int | None = None
        self.booted = False
        self._next_scan: float | None = None
        self.memory = MemorySampler()  # samples for max_memory (none without it)
        self._pending: deque[Event] = deque()
        self._reaped: set[int] = set()  # reaped this turn, the core not told yet
        # this event's forks, their answers not made yet: (pid, spawn, index, at) each,
        # or the ForkFailed answer of a fork that failed (see _answer_forks)
        self._forks: list[tuple[int, Spawn, int, float] | ForkFailed] = []
        self._answers: list[Event] = []  # this event's other answers (ConfigLoaded...)
        self._after_answers: list[tuple[str, tuple[object, ...]]] = []  # hooks waiting
        self._asking: set[object] = set()  # Status requests waiting for their Reply
        self._replies: dict[object, object] = {}
        self._scan_config: PoolConfig | None = None
        self._scan_every: float | None = None
        self._master_pid = os.getpid()
        # the control socket and health port (posix.serving), served after each turn
        self.endpoints = endpoints
        self.loop_lag = 0.0  # how late the last timed wake-up came
        self.durations = Durations()  # the perform durations of the workers reaped
        if endpoints is not None:
            endpoints.attach(self.poller, MasterView(
                self.ask_status, self.feed, lambda: self.loop_lag, self._master_pid,
                supervisor.config.name, self.perform_durations))

    # driving -----------------------------------------------------------------------------

    def boot(self) -> None:
        """Tell the core the adapter is ready; it forks the initial workers."""
        if not self.booted:
            self.booted = True
            has_terminal = self.handle_signals and process.has_controlling_terminal()
            self.feed(Boot(has_terminal=has_terminal, at=time.monotonic()))

    def run(self) -> int:
        """Install the signal handlers, boot, and loop until the core says ``Exit``."""
        self.signals = SignalWakeup()
        self.signals.install()
        self.poller.register(self.signals.read_fd)
        try:
            self.boot()
            while self.exit_code is None:
                self.turn(block=True)
        except BaseException:
            self._abandon_workers()
            raise
        finally:
            self.signals.restore()
            self.poller.unregister(self.signals.read_fd)
            self.signals.close()
            self.signals = None
        return self.exit_code

    def feed(self, event: Event) -> None:
        """Hand ``event`` to the core and carry out the effects (and their answers)."""
        self._pending.append(event)
        self._process()

    def turn(self, *, block: bool) -> None:
        """One turn: sleep (if ``block``) until something happens, then hand it over."""
        asleep = time.monotonic()
        timeout = self._poll_timeout_ms(asleep) if block else 0
        ready = {fd for fd, _ in self.poller.poll(timeout)}
        now = time.monotonic()
        if timeout and not ready:  # woken by the clock: how late
            self.loop_lag = max(0.0, now - asleep - timeout / 1000)
        if self.service is not None:  # the loop turns: the watchdog may hear so
            self.service.keepalive(now)
        self._pending.extend(self._collect(ready, now))
        self._process()
        if self.endpoints is not None:
            self.endpoints.serve(ready, now)

    def wait_until(self, done: Callable[[], bool]) -> None:
        """Turn the loop until ``done()`` (or the core's ``Exit``)."""
        while not done() and self.exit_code is None:
            self.turn(block=True)

    def ask_status(self) -> object:
        """Ask the core for a snapshot of the pool (``Status``); return its ``Reply``."""
        if self.exit_code is not None:  # stopped: no more events; its last picture stands
            return self.supervisor.snapshot()
        request = object()
        self._asking.add(request)
        try:  # what the workers counted without a notice, first
            self._pending.extend(self._look_at(self.workers.values(), time.monotonic()))
            self.feed(Status(request, at=time.monotonic()))
        finally:
            self._asking.discard(request)
        if request not in self._replies:
            raise RuntimeError("the core did not answer Status with a Reply")
        return self._replies.pop(request)

    def perform_durations(self) -> dict[str, tuple[list[int], float]]:
        """Each pool's perform duration histogram, from every slot (``/metrics``)."""
        live = [(worker.group, worker.index) for worker in self.workers.values()]
        return self.durations.histograms(self.board, live)

    @property
    def scan_every(self) -> float | None:
        """How often to read the scoreboard, for the config the core runs now."""
        config = self.supervisor.config
        if config is not self._scan_config:
            self._scan_config, self._scan_every = config, scan_interval(config)
        return self._scan_every

    # collecting events -------------------------------------------------------------------

    def _collect(self, ready: set[int], now: float) -> list[Event]:
        events: list[Event] = []
        self._reaped = set()
        for pid, status in self.children.reap(strays=self.handle_signals):
            self._reaped.add(pid)
            events.extend(self._exited(pid, status, now))
        if self.signals is not None and self.signals.read_fd in ready:
            for sig in self.signals.received():
                if sig is not Sig.CHLD:  # a worker's exit says more than its SIGCHLD
                    self.logger.info(f"master got {sig}")
                events.append(Signal(sig, at=now))
        events.extend(self._look_at(self._to_look_at(ready, now), now))
        events += self.memory.collect(((w.pid, w.group) for w in self.workers.values()),
                                      self.supervisor.config, now)
        if self.wake_at is not None and now >= self.wake_at:
            events.append(Tick(now))
        return events

    def _to_look_at(self, ready: set[int], now: float) -> Iterable[_Worker]:
        """The workers whose slots this turn reads: those that gave notice, or everyone
        when the scan is due (a perform ``timeout`` is set, or a pool scales), when one of
        the core's deadlines is (a heartbeat may have moved it), when the memory sample
        is (``max_memory``), or when a notice may be lost.

        So a wake-up costs what changed, not the size of the pool."""
        notices: set[int] | None = set()
        if self.notify_r in ready:
            data = drain(self.notify_r)
            notices = noticed(data, full=len(data) >= self._notify_capacity)
        every = self.scan_every
        if not every or not self.workers:
            self._next_scan = None
        elif self._next_scan is None or now >= self._next_scan:
            due, self._next_scan = self._next_scan is not None, now + every
            if due:
                notices = EVERYONE
        else:  # a reload may have shortened the timeout
            self._next_scan = min(self._next_scan, now + every)
        if self.wake_at is not None and now >= self.wake_at:
            notices = EVERYONE  # a deadline is due: the core judges it on fresh readings
        sample_at = self.memory.next_at
        if sample_at is not None and now >= sample_at:
            notices = EVERYONE  # a memory sample is judged with the perform it was taken in
        if notices is EVERYONE:
            return list(self.workers.values())
        return [self._by_index[i] for i in sorted(notices) if i in self._by_index]

    def _look_at(self, workers: Iterable[_Worker], now: float) -> list[Event]:
        """An ``Observed`` for each of ``workers`` whose slot changed since the last look."""
        events: list[Event] = []
        for worker in workers:
            observed = self._observe(worker, now)
            if observed is not None:
                events.append(observed)
        return events

    def _exited(self, pid: int, status: int, now: float) -> list[Event]:
        events: list[Event] = []
        worker = self.workers.pop(pid, None)
        performs = performing = None
        self.logger.debug(f"reaped pid={pid} (status {status})")
        if worker is not None:
            final = self.board.read(worker.index)
            self.durations.retire(worker.group, self.board, worker.index)
            performs, performing = final.performs, final.worker_state is WorkerState.PERFORMING
            self.board.release(worker.index)
            self._by_index.pop(worker.index, None)
            child = self.children.live.get(pid)
            if child is not None and child.pidfd is not None:
                self.poller.unregister(child.pidfd)
            self.children.forget(pid)
        events.append(ChildExited(pid, status, performs, performing, at=now))
        return events

    def _observe(self, worker: _Worker, now: float) -> Observed | None:
        reading = self.board.read(worker.index)
        if reading == worker.last:
            return None
        state = reading.worker_state
        if state is None:  # a torn or foreign write: wait for the next look
            return None
        worker.last = reading
        return Observed(worker.pid, state, reading.heartbeat_at, reading.performs,
                        reading.failures, reading.recycle_reason, reading.memory_mib or None,
                        at=now)

    def _poll_timeout_ms(self, now: float) -> int | None:
        times = [t for t in (self.wake_at, self._next_scan, self.memory.next_at)
                 if t is not None]
        if self.service is not None and self.service.wake_at is not None:
            times.append(self.service.wake_at)
        if self.endpoints is not None and self.endpoints.wake_at is not None:
            times.append(self.endpoints.wake_at)  # a connection's deadline
        if self.workers and not self.children.use_pidfd and self.signals is None:
            times.append(now + _FALLBACK_POLL)
        if not times:
            return None
        return max(0, math.ceil((min(times) - now) * 1000))

    # carrying out effects ----------------------------------------------------------------

    def _process(self) -> None:
        # after Exit the core is stopped for good and has no row for anything more (the
        # last child's SIGCHLD, an impatient second QUIT): what is left is dropped
        while self._pending and self.exit_code is None:
            event = self._pending.popleft()
            try:
                for effect in _forks_first(self.supervisor.handle(event)):
                    self._carry_out(effect)
            finally:
                answers = self._answer_forks()
                answers += self._answers
                self._answers = []
            # the answers of the Spawns (then of the rest) go ahead of every other event
            self._pending.extendleft(reversed(answers))
        while self._after_answers:  # when_ready: once its workers' forks are answered
            self._run_hook(*self._after_answers.pop(0), deferred=True)

    def _carry_out(self, effect: Effect) -> None:
        # Spawn first: a pool's boot is a run of them, and what is looked at between two
        # forks is copied once per fork
        if isinstance(effect, Spawn):
            self._spawn(effect)
        elif isinstance(effect, Log):
            log = getattr(self.logger, effect.level, None) or self.logger.info
            if effect.fields and isinstance(self.logger, logging.Logger):
                # the line's fields, for a structured format (prefork.logs)
                log(effect.message, extra={"prefork": dict(effect.fields)})
            else:
                log(effect.message)
        elif isinstance(effect, WakeAt):
            if effect.when is not None and effect.when != self.wake_at:
                self.logger.debug(f"next deadline in {effect.when - time.monotonic():.3f}s")
            self.wake_at = effect.when
        elif isinstance(effect, Kill):
            self._kill(effect)
        elif isinstance(effect, SetTitle):
            if self.set_titles:
                process.set_title(effect.text)
        elif isinstance(effect, ReopenLogs):
            if self.reopen_logs is not None:
                self.reopen_logs()
        elif isinstance(effect, RunHook):
            self._run_hook(effect.name, effect.args)
        elif isinstance(effect, ReadConfig):
            self._answers.append(self._read_config(effect.path))
        elif isinstance(effect, Reply):
            self._reply(effect)
        elif isinstance(effect, Notify):
            if self.service is not None:
                self.service.notify(effect.message, time.monotonic())
        elif isinstance(effect, Exit):
            self.exit_code = effect.code
        else:  # a new kind of effect the adapter does not know: stop loudly
            raise TypeError(f"the POSIX adapter cannot carry out {effect!r}")

    def _run_hook(self, name: str, args: tuple[object, ...], deferred: bool = False) -> None:
        """Run the user's hook ``name`` in the master: a raising hook is logged with its
        traceback, and the pool goes on. ``when_ready`` waits until the forks asked for
        with it are answered, so that the pool it is shown has its workers' pids."""
        hook = self.hooks.get(name)
        if hook is None:
            return
        if name == "when_ready" and not deferred:
            self._after_answers.append((name, args))
            return
        try:
            hook(*args)
        except Exception:
            self.logger.exception(f"hook {name} raised")

    def _read_config(self, path: str) -> Event:
        """Read the config file (HUP): ``ConfigLoaded``, or ``ConfigRejected`` when it
        cannot be read or is invalid. The core logs either; a reader that raises anything
        but ``ConfigError`` is a bug, whose traceback is logged here, and the running
        config stays all the same."""
        at = time.monotonic()
        if self.read_config is None:
            return ConfigRejected(path, "this master has no config reader", at=at)
        try:
            config = self.read_config(path)
        except ConfigError as error:
            return ConfigRejected(path, str(error), at=at)
        except Exception as error:
            self.logger.exception(f"reading the config file {path} raised")
            return ConfigRejected(path, f"reading it raised {type(error).__name__}: {error}",
                                  at=at)
        return ConfigLoaded(config, at=at)

    def _reply(self, effect: Reply) -> None:
        if effect.request in self._asking:
            self._replies[effect.request] = effect.snapshot
        else:
            self.logger.warning(f"a reply to {effect.request!r}, which nobody is waiting for")

    def _kill(self, effect: Kill) -> None:
        if effect.pid not in self.workers:
            # The benign race: the core may stop a worker that died a moment ago (a
            # recycled one, once its replacement is read ready in the same turn). It is
            # reaped already, so nothing is sent: its pid may belong to a stranger now.
            level = "debug" if effect.pid in self._reaped else "warning"
            getattr(self.logger, level)(f"not sending {effect.signo} to pid={effect.pid}: "
                                        "not a live worker of this master")
            return
        self.logger.debug(f"sending {effect.signo} to pid={effect.pid}")
        self.children.kill(effect.pid, signum(effect.signo), group=effect.signo is Sig.KILL)

    def _spawn(self, effect: Spawn) -> None:
        """Fork a worker, and nothing more: ``_answer_forks`` does the rest, later."""
        index = self.board.allocate()
        # CPython's advice for pre-fork servers: objects alive now go to a generation the
        # collector never walks, so the worker's collections do not write to (and copy)
        # every page it inherited. The master thaws its own copy at once, or the cyclic
        # garbage of the moment would never be collected. Both O(1).
        # (with ``preload`` everything the master held was frozen for good already: the
        # unfreeze below would thaw it, so neither is done then)
        thaw = gc.get_freeze_count() == 0
        if thaw:
            gc.freeze()
        mask = raw_pthread_sigmask(signal.SIG_BLOCK, CHILD_BLOCKED_SIGNALS)
        try:
            pid = self.children.fork(lambda: self._become_worker(effect, index, mask))
        except OSError as error:
            self.board.release(index)
            self._forks.append(
                ForkFailed(effect.group, effect.slot, str(error), at=time.monotonic()))
            return
        finally:
            if thaw:
                gc.unfreeze()
            raw_pthread_sigmask(signal.SIG_SETMASK, mask)
        self._forks.append((pid, effect, index, time.monotonic()))

    def _answer_forks(self) -> list[Event]:
        """The rest of this event's forks, all at once; their answers, in order.

        Called once the effects of an event are carried out, before the loop does
        anything else: until then no child is reaped or signalled.
        """
        forks, self._forks = self._forks, []
        answers: list[Event] = []
        for fork in forks:
            if isinstance(fork, ForkFailed):
                answers.append(fork)
                continue
            pid, effect, index, at = fork
            pidfd = self.children.adopt(pid).pidfd
            if pidfd is not None:
                self.poller.register(pidfd)
            # the baseline is what allocate() wrote before the fork, never a reading
            # taken now: a quick child may have finished its setup already
            worker = _Worker(pid, effect.group, effect.slot, index, FRESH_READING)
            self.workers[pid] = self._by_index[index] = worker
            answers.append(Forked(effect.group, effect.slot, pid, at=at))
            self.logger.debug(f"forked pid={pid} for {effect.group}#{effect.slot}")
        return answers

    def _become_worker(self, effect: Spawn, index: int, mask: set[int]) -> int:
        """In the child: drop the master's machinery, then run the worker."""
        if effect.held:  # on hold (USR2): pending, blocked, until the worker's own handler
            os.kill(os.getpid(), signum(Sig.USR2))
        if self.signals is not None:
            self.signals.reset_in_child()
        self.children.close_in_child()
        if self.endpoints is not None:
            self.endpoints.close_in_child()
        self.poller.close()
        for fd in (self.notify_r, self.lifeline_w):
            try:  # noqa: SIM105  (not contextlib.suppress: each object made is a page copied)
                os.close(fd)
            except OSError:
                pass
        spec = Handoff(
            group=effect.group,
            slot=effect.slot,
            board_slot=self.board.slot(index),
            notify_fd=self.notify_w,
            lifeline_fd=self.lifeline_r,
            master_pid=self._master_pid,
            signal_mask=frozenset(map(int, mask)),
        )
        return self.worker_main(spec)

    def _abandon_workers(self) -> None:
        """The loop is dying of an exception: ask every worker to stop gracefully."""
        for pid in list(self.workers):
            self.children.kill(pid, signum(Sig.QUIT))

    def close(self) -> None:
        """Release the pipes (after ``run`` returned, or when the API is done)."""
        for fd in (self.notify_r, self.notify_w, self.lifeline_r, self.lifeline_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        self.poller.close()
