"""A simulated operating system for driving the pure core without real processes.

``SimOS`` stands where the POSIX adapter stands: it owns a ``Supervisor``, feeds it events
and carries out the effects it returns, against a fake process table. No process is
forked, no signal sent, no clock read. The test is the scheduler: children change only
when the test says so (``finish_setup``, ``start_perform``, ``crash``...), time moves only
when the test moves it (``advance``), and the core hears of a child's death only when the
test reaps it (``reap``). So any interleaving of the real world can be written down, and
hypothesis can search them (``tests/property`` does).

Example: a pool of two boots, one worker is in a perform when QUIT arrives, the idle one
leaves at once, the busy one when its perform ends, and the master exits 0 once both
are reaped::

    >>> from prefork.core import Kill, PoolConfig, Sig
    >>> from prefork.testing import SimOS
    >>> sim = SimOS(PoolConfig.of(workers=2, graceful_timeout=30))
    >>> _ = sim.boot()
    >>> sim.pids()
    [100, 101]
    >>> for pid in sim.pids():
    ...     sim.finish_setup(pid)
    ...     _ = sim.observe(pid)
    >>> sim.start_perform(100)
    >>> _ = sim.observe(100)
    >>> mark = sim.mark()
    >>> _ = sim.signal(Sig.QUIT)
    >>> str(sim.state)
    'draining'
    >>> [(kill.pid, kill.signo) for kill in sim.effects_since(mark, Kill)]
    [(100, QUIT), (101, QUIT)]
    >>> sim.zombies()          # the idle worker left at once
    [101]
    >>> sim.advance(2.5)
    >>> sim.end_perform(100)   # the busy one finishes its perform, then leaves
    >>> _ = sim.reap_all()
    >>> str(sim.state), sim.exit_code
    ('stopped', 0)

Semantic choices (what the simulated world does; each is a choice a real OS or a real
worker could make, written down so that tests can rely on it):

* **Pids** come from a small space, ``pid_base .. pid_base + pid_space - 1``, lowest free
  first, and a pid is free again as soon as its process is reaped: the next fork after a
  reap usually gets the pid just reaped, so a core that keeps a dead worker's pid shows
  at once. When every pid is taken, ``Spawn`` is answered with
  ``ForkFailed(..., "EAGAIN: ...")``.
* **Spawn** creates a process in state ``spawning`` (running ``setup()``) and answers at
  once with ``Forked`` (or ``ForkFailed`` when the test armed ``fail_next_forks``). The
  answers are fed in order, before any other event, as the adapter contract demands.
  Every fed event is stamped with ``at=now`` unless it carries its own time.
* **Signals** from ``Kill`` effects are recorded on the process (``SimProcess.signals``,
  and with their time in ``SimProcess.signalled``), then take effect:

  - ``KILL`` always kills: the process becomes a zombie with status ``-9``.
  - a **hung** process (``hang(pid)``, "stuck in C") ignores ``QUIT``, ``TERM``, ``INT``
    and ``ABRT``; only ``KILL`` moves it.
  - ``QUIT`` is cooperative: an idle worker runs its teardown and exits 0 at once; a
    performing one exits 0 when its perform ends (``end_perform``); a spawning one
    finishes its setup (``finish_setup``) and then exits 0 without performing.
  - ``TERM`` and ``INT`` stop a worker at once, interrupting its perform (which does not
    count): it exits with status 0, as Unicorn's workers do (``exit!(0)``).
  - ``ABRT`` makes the worker dump its stack (``SimProcess.dumps`` counts the dumps) and
    kill its own process group at once: it dies with status ``-9``, as a KILL would
    leave it (a hung worker, stuck in C, runs no handler: it waits for the KILL).
  - ``USR2`` holds the worker (``start_perform`` refuses until ``CONT``), ``CONT``
    releases it, ``USR1`` counts a log reopening (``SimProcess.log_reopens``); other
    signals are recorded and change nothing.
  - a zombie records the signal and ignores it (``kill`` on an unreaped pid succeeds).
  - a ``Kill`` for a pid that is not a live-or-zombie child the core spawned (a free pid,
    or a stray's) is a broken contract: it is appended to ``SimOS.misdirected`` and, with
    ``strict=True`` (the default), raises ``ContractBroken``; with ``strict=False`` a
    stray is hit all the same, as a real stranger would be.
* **Death and reaping**: a process that exits, crashes or is killed becomes a zombie and
  keeps its pid; only ``reap(pid)`` (or ``reap_all()``) removes it from the table and
  feeds ``ChildExited(pid, status, performs)``, in whatever order the test reaps; for a
  worker, ``performs`` is its final count, as the adapter reads it from the slot. Before
  it, ``reap`` feeds the worker's last scoreboard reading (``Observed``), a reading of a
  zombie, whose pid is still reserved (``observe=False`` skips it, as the adapter does).
  ``reap_all`` stops once the master has stopped (it has exited; strays left over stay
  zombies), while an explicit ``reap`` after the stop feeds the event all the same, so a
  test can check that the core refuses it.
* **Scoreboard readings** are explicit: ``observe(pid)`` feeds
  ``Observed(pid, state, heartbeat_at, performs, failures)`` from the process's own
  slot: the state it last wrote (spawning, idle or performing; a zombie's slot keeps its
  last state), when its current perform began or it last called ``heartbeat`` (0 when
  not performing), how many performs it finished, and how many failed without ending it
  (``fail_perform``: a forked perform's child that raised). What the core was last told
  is kept on the process (``reported_state``, ``reported_performs``,
  ``reported_failures``), for oracles that judge the core by what it could know.
* **Strays**: ``spawn_stray()`` makes a child the core never forked (a process the
  preload started, say); it can exit or crash like a worker and is reaped like one, but it
  has no scoreboard slot, so it is never observed.
* **The config file**: ``ReadConfig(path)`` is answered at once, like a ``Spawn``, with
  ``ConfigLoaded(config)`` for the config the test put in the file
  (``write_config_file(config)``; until it does, the file holds the config the sim
  started with) or, after ``break_config_file(why)``, with ``ConfigRejected(path, why)``.
  Each request is counted in ``config_reads``.
* **Effects** other than ``Spawn``, ``Kill`` and ``ReadConfig`` are recorded: ``WakeAt``
  in ``wake_at``, ``Log`` in ``logs``, ``SetTitle`` in ``title``, ``ReopenLogs`` in
  ``log_reopens``, ``RunHook`` in ``hooks`` (name and arguments, in order), ``Reply`` in
  ``replies``, ``Notify`` in ``notices`` (the messages, in order), ``Exit`` in
  ``exit_code``. Nothing is fed back for them: ``tick()`` feeds
  ``Tick(now)`` when the test says so, and ``run_until(t)`` ticks at every requested
  wake-up up to ``t``.
* **The trace**: every fed event becomes a ``Step`` in ``trace`` (with the effects the
  core returned, the master state before and after, the time, and the error if the core
  raised). ``mark()`` and ``steps_since``/``events_since``/``effects_since`` slice it,
  ``format_trace`` prints it, and ``replay()`` feeds the recorded events to a fresh
  ``Supervisor`` and checks that it answers exactly the same (determinism).
  ``listeners`` are called with each ``Step`` after the core answered and before the sim
  carries out the effects, so they see the world the core decided in.

Methods that make a process do something (``finish_setup``...) raise ``SimError`` when
the process cannot do it in its state (a hung process does nothing, a held one starts no
perform, a zombie nothing at all); only ``crash`` reaches a hung process too (a segfault,
the OOM killer).
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TypeVar

from prefork.core import (
    Boot,
    ChildExited,
    ConfigLoaded,
    ConfigRejected,
    CoreError,
    Effect,
    Event,
    Exit,
    Forked,
    ForkFailed,
    Kill,
    Log,
    MasterState,
    MemorySampled,
    Notify,
    Observed,
    PoolConfig,
    ReadConfig,
    Reload,
    ReopenLogs,
    Reply,
    RunHook,
    Scale,
    SetTitle,
    Sig,
    Signal,
    Spawn,
    StartWorker,
    Status,
    StopAll,
    StopWorker,
    Supervisor,
    Tick,
    WakeAt,
    WorkerState,
)

__all__ = [
    "KILL_STATUS",
    "STOP_SIGNALS",
    "TERM_STATUS",
    "ContractBroken",
    "ProcState",
    "SimError",
    "SimOS",
    "SimProcess",
    "Step",
]

KILL_STATUS = -9
"""``ChildExited.status`` of a process killed by KILL."""
TERM_STATUS = 0
"""``ChildExited.status`` of a worker stopped by TERM or INT (it exits through its handler)."""
STOP_SIGNALS = frozenset({Sig.QUIT, Sig.TERM, Sig.INT, Sig.ABRT, Sig.KILL})
"""Signals that tell a worker to stop (the others are forwarded requests)."""
_SOFT_STOP = frozenset({Sig.QUIT, Sig.TERM, Sig.INT, Sig.ABRT})
_COMMANDS = (StartWorker, StopWorker, StopAll, Scale, Reload, Status)

E = TypeVar("E", bound=Effect)


class SimError(Exception):
    """The test asked the simulated world for something it cannot do."""


class ContractBroken(AssertionError):
    """The core asked for something it must never ask (a signal to a pid it does not own)."""


class ProcState(StrEnum):
    """Where a simulated process is in its life."""

    SPAWNING = "spawning"
    IDLE = "idle"
    PERFORMING = "performing"
    ZOMBIE = "zombie"
    REAPED = "reaped"


_LIVE = (ProcState.SPAWNING, ProcState.IDLE, ProcState.PERFORMING)
_SCOREBOARD = {
    ProcState.SPAWNING: WorkerState.SPAWNING,
    ProcState.IDLE: WorkerState.IDLE,
    ProcState.PERFORMING: WorkerState.PERFORMING,
}


@dataclass(eq=False)
class SimProcess:
    """One simulated child process (a worker the core spawned, or a stray).

    ``serial`` tells apart the processes that shared a recycled pid. ``scoreboard`` is the
    state the worker last wrote in its slot, and it stays there after death.
    """

    pid: int
    serial: int
    forked_at: float
    group: str | None = None
    slot: int | None = None
    stray: bool = False
    state: ProcState = ProcState.SPAWNING
    scoreboard: WorkerState = WorkerState.SPAWNING
    heartbeat_at: float = 0.0
    performs: int = 0
    signals: list[Sig] = field(default_factory=list)
    signalled: list[tuple[float, Sig]] = field(default_factory=list)
    quitting: bool = False
    held: bool = False
    hung: bool = False
    dumps: int = 0
    log_reopens: int = 0
    status: int | None = None
    exited_at: float | None = None
    failures: int = 0  # failed performs it outlived (forking strategy)
    reported_performs: int = 0  # the count the core was last given (a reading or the exit)
    reported_failures: int = 0  # the count of failed performs the core was last given
    reported_state: WorkerState | None = None  # the state the core last read in its slot
    recycle: str | None = None  # it asks to be recycled (max_performs, max_memory)
    memory_mib: float | None = None  # its own figure of its memory, when it asks for it

    def __repr__(self) -> str:
        who = "stray" if self.stray else f"{self.group}.{self.slot}"
        flags = "".join(
            f" {name}" for name in ("hung", "held", "quitting") if getattr(self, name)
        )
        status = "" if self.status is None else f" status={self.status}"
        return f"<SimProcess pid={self.pid} #{self.serial} {who} {self.state}{status}{flags}>"

    @property
    def alive(self) -> bool:
        """Running (spawning, idle or performing): not yet dead."""
        return self.state in _LIVE

    @property
    def zombie(self) -> bool:
        """Dead and not yet reaped."""
        return self.state is ProcState.ZOMBIE

    @property
    def told_to_stop(self) -> bool:
        """It received a signal that tells a worker to stop (QUIT, TERM, INT, ABRT, KILL)."""
        return any(sig in STOP_SIGNALS for sig in self.signals)


@dataclass(frozen=True)
class Step:
    """One event fed to the core, and what came of it."""

    index: int
    now: float
    event: Event
    effects: tuple[Effect, ...]
    before: MasterState
    after: MasterState
    process: SimProcess | None = None
    error: str | None = None

    def __str__(self) -> str:
        change = f"{self.before}" if self.before is self.after else (
            f"{self.before}->{self.after}")
        shown = ", ".join(repr(effect) for effect in self.effects
                          if not isinstance(effect, Log | SetTitle))
        outcome = f"!! CoreError: {self.error}" if self.error else f"=> [{shown}]"
        return f"#{self.index} t={self.now:g} [{change}] {self.event!r} {outcome}"


class SimOS:
    """A fake process table, a clock the test moves, and the ``Supervisor`` it drives.

    ``config`` is the pool's ``PoolConfig``; ``pid_base`` and ``pid_space`` bound the pids
    handed out (small, so pids are recycled); ``start`` is the clock's first reading;
    ``strict`` makes a misdirected ``Kill`` raise ``ContractBroken`` instead of only
    being recorded in ``misdirected``.
    """

    #: how many events one ``feed`` may cause (answers to spawns included) before the sim
    #: calls it a runaway loop
    max_answers = 10_000

    def __init__(
        self,
        config: PoolConfig | None = None,
        *,
        pid_base: int = 100,
        pid_space: int = 32,
        start: float = 0.0,
        strict: bool = True,
    ) -> None:
        if pid_space < 1:
            raise ValueError("pid_space must be at least 1")
        self.initial_config = config if config is not None else PoolConfig()
        self.supervisor = Supervisor(self.initial_config)
        self.pid_base = pid_base
        self.pid_space = pid_space
        self.now = float(start)
        self.strict = strict
        self.table: dict[int, SimProcess] = {}
        self.processes: list[SimProcess] = []
        self.trace: list[Step] = []
        self.listeners: list[Callable[[Step], None]] = []
        self.wake_at: float | None = None
        self.logs: list[Log] = []
        self.title: str | None = None
        self.log_reopens = 0
        self.notices: list[str] = []
        self.exit_code: int | None = None
        self.misdirected: list[tuple[float, Kill]] = []
        self.hooks: list[tuple[str, tuple[object, ...]]] = []
        self.replies: list[Reply] = []
        self.config_reads = 0
        self._fork_failures: deque[str] = deque()
        self._config_file: PoolConfig | str = self.initial_config

    def __repr__(self) -> str:
        return f"<SimOS t={self.now:g} master={self.state} pids={sorted(self.table)}>"

    @property
    def state(self) -> MasterState:
        """The master machine's state."""
        return self.supervisor.state

    # time --------------------------------------------------------------------------

    def advance(self, dt: float) -> None:
        """Move the clock ``dt`` seconds on (the core hears of it with the next event)."""
        if dt < 0:
            raise SimError(f"time does not run backwards (dt={dt})")
        self.now += dt

    def advance_to(self, when: float) -> None:
        """Move the clock to ``when`` (no-op if it reads later already)."""
        self.now = max(self.now, when)

    def tick(self) -> list[Effect]:
        """Feed ``Tick(now)``: time passed."""
        return self.feed(Tick(self.now))

    def run_until(self, when: float) -> list[Effect]:
        """Tick at every wake-up the core asks for up to ``when``; leave the clock there."""
        produced: list[Effect] = []
        for _ in range(self.max_answers):
            wake = self.wake_at
            if wake is None or wake > when or self.state is MasterState.STOPPED:
                break
            self.advance_to(wake)
            produced += self.tick()
            if self.wake_at is not None and self.wake_at <= self.now and self.wake_at == wake:
                break  # the core asked for this moment again: nothing more happens now
        self.advance_to(when)
        return produced

    def run_for(self, dt: float) -> list[Effect]:
        """``run_until(now + dt)``."""
        return self.run_until(self.now + dt)

    # events into the core --------------------------------------------------------------

    def boot(self, *, has_terminal: bool = False) -> list[Effect]:
        """Feed ``Boot``: the pool starts."""
        return self.feed(Boot(has_terminal=has_terminal))

    def signal(self, signo: Sig) -> list[Effect]:
        """The master process receives ``signo``."""
        return self.feed(Signal(signo))

    def command(self, event: Event) -> list[Effect]:
        """Feed a command (``StartWorker``, ``StopWorker``, ``StopAll``, ``Scale``, ``Reload``,
        ``Status``)."""
        if not isinstance(event, _COMMANDS):
            raise SimError(f"{event!r} is not a command")
        return self.feed(event)

    def feed(self, event: Event) -> list[Effect]:
        """Feed ``event`` (stamped ``at=now`` unless it has a time) and carry out the effects.

        Every ``Spawn`` is answered at once with ``Forked``/``ForkFailed``, and those
        answers are fed too, in order; the effects of all of them are returned. A
        ``CoreError`` is recorded in the trace and raised.
        """
        return self._feed(event, self._process_of(event))

    def _feed(self, event: Event, process: SimProcess | None) -> list[Effect]:
        queue: deque[Event] = deque()
        produced = self._feed_one(self._stamped(event), process, queue)
        fed = 1
        while queue:
            fed += 1
            if fed > self.max_answers:
                raise SimError(f"runaway: {event!r} led to more than {self.max_answers} events")
            answer = queue.popleft()
            produced += self._feed_one(answer, self._process_of(answer), queue)
        return produced

    def _stamped(self, event: Event) -> Event:
        if isinstance(event, Tick) or event.at is not None:
            return event
        return dataclasses.replace(event, at=self.now)

    def _feed_one(self, event: Event, process: SimProcess | None,
                  queue: deque[Event]) -> list[Effect]:
        before = self.supervisor.state
        try:
            effects = self.supervisor.handle(event)
        except CoreError as error:
            self._record(Step(len(self.trace), self.now, event, (), before,
                              self.supervisor.state, process, str(error)))
            raise
        self._record(Step(len(self.trace), self.now, event, tuple(effects), before,
                          self.supervisor.state, process))
        for effect in effects:
            self._carry_out(effect, queue)
        return effects

    def _process_of(self, event: Event) -> SimProcess | None:
        """The process an event is about (for the trace), if it is in the table."""
        if isinstance(event, ChildExited | Forked | Observed):
            return self.table.get(event.pid)
        return None

    def _record(self, step: Step) -> None:
        self.trace.append(step)
        for listener in list(self.listeners):
            listener(step)

    # effects out of the core ------------------------------------------------------------

    def _carry_out(self, effect: Effect, queue: deque[Event]) -> None:
        if isinstance(effect, Spawn):
            queue.append(self._fork(effect))
        elif isinstance(effect, ReadConfig):
            queue.append(self._read_config(effect))
        elif isinstance(effect, RunHook):
            self.hooks.append((effect.name, effect.args))
        elif isinstance(effect, Reply):
            self.replies.append(effect)
        elif isinstance(effect, Kill):
            self._deliver(effect)
        elif isinstance(effect, WakeAt):
            self.wake_at = effect.when
        elif isinstance(effect, Log):
            self.logs.append(effect)
        elif isinstance(effect, SetTitle):
            self.title = effect.text
        elif isinstance(effect, ReopenLogs):
            self.log_reopens += 1
        elif isinstance(effect, Notify):
            self.notices.append(effect.message)
        elif isinstance(effect, Exit):
            self.exit_code = effect.code
        else:  # pragma: no cover - a new effect type the sim does not know yet
            raise SimError(f"the sim cannot carry out {effect!r}")

    def _read_config(self, request: ReadConfig) -> Event:
        self.config_reads += 1
        if isinstance(self._config_file, str):
            return ConfigRejected(request.path, self._config_file, at=self.now)
        return ConfigLoaded(self._config_file, at=self.now)

    def write_config_file(self, config: PoolConfig) -> None:
        """The next ``ReadConfig`` finds ``config`` in the file."""
        self._config_file = config

    def break_config_file(self, why: str) -> None:
        """The next ``ReadConfig`` finds a file that does not validate, for this reason."""
        self._config_file = why

    def _fork(self, spawn: Spawn) -> Event:
        if self._fork_failures:
            return ForkFailed(spawn.group, spawn.slot, self._fork_failures.popleft(), at=self.now)
        pid = self._free_pid()
        if pid is None:
            return ForkFailed(spawn.group, spawn.slot, "EAGAIN: no free pid", at=self.now)
        self._new_process(pid, group=spawn.group, slot=spawn.slot)
        return Forked(spawn.group, spawn.slot, pid, at=self.now)

    def _free_pid(self) -> int | None:
        for pid in range(self.pid_base, self.pid_base + self.pid_space):
            if pid not in self.table:
                return pid
        return None

    def _new_process(self, pid: int, **fields: object) -> SimProcess:
        process = SimProcess(pid=pid, serial=len(self.processes), forked_at=self.now,
                             **fields)  # type: ignore[arg-type]
        self.processes.append(process)
        self.table[pid] = process
        return process

    def _deliver(self, kill: Kill) -> None:
        process = self.table.get(kill.pid)
        if process is None or process.stray:
            self.misdirected.append((self.now, kill))
            if self.strict:
                whom = "a stray" if process is not None else "no child of the master"
                raise ContractBroken(f"t={self.now:g}: {kill!r} targets {whom}")
        if process is not None:
            self._apply_signal(process, kill.signo)

    def _apply_signal(self, process: SimProcess, signo: Sig) -> None:
        process.signals.append(signo)
        process.signalled.append((self.now, signo))
        if not process.alive:
            return
        if signo is Sig.KILL:
            self._die(process, KILL_STATUS)
        elif process.hung and signo in _SOFT_STOP:
            return
        elif signo is Sig.QUIT:
            if process.state is ProcState.IDLE:
                self._die(process, 0)
            else:
                process.quitting = True
        elif signo in (Sig.TERM, Sig.INT):
            self._die(process, TERM_STATUS)
        elif signo is Sig.ABRT:  # a clean dump, then it kills its own process group
            process.dumps += 1
            self._die(process, KILL_STATUS)
        elif signo is Sig.USR2:
            process.held = True
        elif signo is Sig.CONT:
            process.held = False
        elif signo is Sig.USR1:
            process.log_reopens += 1

    def _die(self, process: SimProcess, status: int) -> None:
        process.state = ProcState.ZOMBIE
        process.status = status
        process.exited_at = self.now

    # what the children do (the test is the scheduler) ------------------------------------

    def process(self, pid: int) -> SimProcess:
        """The process that holds ``pid`` now (alive or zombie); ``SimError`` if none."""
        try:
            return self.table[pid]
        except KeyError:
            raise SimError(f"no process with pid {pid}") from None

    def _able(self, pid: int, *states: ProcState, doing: str) -> SimProcess:
        process = self.process(pid)
        if process.state not in states:
            raise SimError(f"pid {pid} cannot {doing}: it is {process.state}")
        if process.hung:
            raise SimError(f"pid {pid} cannot {doing}: it is hung")
        return process

    def finish_setup(self, pid: int) -> None:
        """The worker's ``setup()`` returns: it is idle (or, told to QUIT, it exits 0)."""
        process = self._able(pid, ProcState.SPAWNING, doing="finish setup")
        process.state, process.scoreboard = ProcState.IDLE, WorkerState.IDLE
        if process.quitting:
            self._die(process, 0)

    def start_perform(self, pid: int) -> None:
        """An idle worker starts a perform (not while held by USR2)."""
        process = self._able(pid, ProcState.IDLE, doing="start a perform")
        if process.held:
            raise SimError(f"pid {pid} cannot start a perform: it is held (USR2)")
        process.state, process.scoreboard = ProcState.PERFORMING, WorkerState.PERFORMING
        process.heartbeat_at = self.now

    def fail_perform(self, pid: int) -> None:
        """A perform fails without ending the worker (the forking strategy's perform child
        raised): one more failure counted in its slot; idle again (or, told to QUIT, it
        exits 0)."""
        process = self._able(pid, ProcState.PERFORMING, doing="fail a perform")
        process.failures += 1
        self._perform_over(process)

    def heartbeat(self, pid: int) -> None:
        """A performing worker calls ``heartbeat()``."""
        process = self._able(pid, ProcState.PERFORMING, doing="heartbeat")
        process.heartbeat_at = self.now

    def end_perform(self, pid: int) -> None:
        """A perform returns: one more done; idle again (or, told to QUIT, it exits 0)."""
        process = self._able(pid, ProcState.PERFORMING, doing="end a perform")
        process.performs += 1
        self._perform_over(process)

    def _perform_over(self, process: SimProcess) -> None:
        """Idle again after a perform, failed or done; told to QUIT, it exits 0."""
        process.state, process.scoreboard = ProcState.IDLE, WorkerState.IDLE
        process.heartbeat_at = 0.0
        if process.quitting:
            self._die(process, 0)

    def ask_to_recycle(self, pid: int, reason: str, mib: float | None = None) -> None:
        """A ready worker asks (in its slot, from now on) to be recycled: it reached its
        ``max_performs``, or measured itself over ``max_memory`` (``mib``). It works on."""
        process = self._able(pid, ProcState.IDLE, ProcState.PERFORMING, doing="ask to recycle")
        if process.scoreboard not in (WorkerState.IDLE, WorkerState.PERFORMING):
            raise SimError(f"pid {pid} cannot ask to recycle: its slot says it sets up")
        process.recycle, process.memory_mib = reason, mib

    def sample_memory(self, pid: int, mib: float) -> list[Effect]:
        """The master samples the unique memory of worker ``pid`` (not reaped yet)."""
        process = self.process(pid)
        if process.stray:
            raise SimError(f"pid {pid} is a stray: the master samples only its workers")
        return self._feed(MemorySampled(pid, mib, at=self.now), process)

    def crash(self, pid: int, status: int = 1) -> None:
        """The process dies with ``status`` (even a hung one: a segfault, the OOM killer)."""
        process = self.process(pid)
        if not process.alive:
            raise SimError(f"pid {pid} cannot crash: it is {process.state}")
        self._die(process, status)

    def exit(self, pid: int, status: int = 0) -> None:
        """The process exits by itself with ``status`` (not while hung)."""
        self._die(self._able(pid, *_LIVE, doing="exit"), status)

    def hang(self, pid: int) -> None:
        """The process gets stuck (in C): it ignores every signal but KILL."""
        process = self.process(pid)
        if not process.alive:
            raise SimError(f"pid {pid} cannot hang: it is {process.state}")
        process.hung = True

    def fail_next_forks(self, count: int = 1, error: str = "EAGAIN") -> None:
        """Answer the next ``count`` Spawns with ``ForkFailed(error)``."""
        self._fork_failures.extend([error] * count)

    def spawn_stray(self) -> int:
        """A child the core never spawned (it will be reaped like any child); its pid."""
        pid = self._free_pid()
        if pid is None:
            raise SimError("no free pid for a stray child")
        process = self._new_process(pid, stray=True)
        process.state, process.scoreboard = ProcState.IDLE, WorkerState.IDLE
        return pid

    # readings and reaping -------------------------------------------------------------

    def observe(self, pid: int) -> list[Effect]:
        """Feed the worker's scoreboard slot as ``Observed(pid, state, heartbeat_at, performs)``."""
        process = self.process(pid)
        if process.stray:
            raise SimError(f"pid {pid} is a stray: it has no scoreboard slot")
        heartbeat = process.heartbeat_at if process.scoreboard is WorkerState.PERFORMING else 0.0
        reading = Observed(pid, process.scoreboard, heartbeat, process.performs,
                           process.failures, process.recycle, process.memory_mib, at=self.now)
        process.reported_performs = process.performs
        process.reported_failures = max(process.reported_failures, process.failures)
        process.reported_state = process.scoreboard
        return self.feed(reading)

    def observe_all(self) -> list[Effect]:
        """Observe every worker (alive or zombie), in pid order."""
        produced: list[Effect] = []
        for pid in self.pids(stray=False):
            if pid in self.table:  # an earlier reading may have led to nothing; stay safe
                produced += self.observe(pid)
        return produced

    def reap(self, pid: int, *, observe: bool = True) -> list[Effect]:
        """``waitpid`` reaps the zombie ``pid``: the pid is free, the core hears ``ChildExited``.

        For a worker, its last scoreboard reading is fed first unless ``observe=False``.
        """
        process = self.process(pid)
        if not process.zombie:
            raise SimError(f"pid {pid} cannot be reaped: it is {process.state}")
        produced = self.observe(pid) if observe and not process.stray else []
        assert process.status is not None
        del self.table[pid]
        process.state = ProcState.REAPED
        performs = None if process.stray else process.performs
        if performs is not None:
            process.reported_performs = performs
        exited = ChildExited(pid, process.status, performs, at=self.now)
        return produced + self._feed(exited, process)

    def reap_all(self, order: Iterable[int] | None = None, *, observe: bool = True) -> list[Effect]:
        """Reap every zombie (in ``order``, else lowest pid first) until the master stops.

        A stopped master has exited: nobody is left to reap what remains (strays).
        """
        produced: list[Effect] = []
        for pid in list(order) if order is not None else self.zombies():
            if self.state is MasterState.STOPPED:
                break
            produced += self.reap(pid, observe=observe)
        return produced

    # the process table ---------------------------------------------------------------

    def pids(self, *states: ProcState, group: str | None = None,
             stray: bool | None = None) -> list[int]:
        """Pids in the table (alive or zombie), in order, filtered by state, group, strayness."""
        return [
            pid for pid, process in sorted(self.table.items())
            if (not states or process.state in states)
            and (group is None or process.group == group)
            and (stray is None or process.stray is stray)
        ]

    def zombies(self, *, stray: bool | None = None) -> list[int]:
        """Pids of dead, unreaped children."""
        return self.pids(ProcState.ZOMBIE, stray=stray)

    def workers(self, group: str | None = None) -> list[SimProcess]:
        """Children the core spawned and has not been told are gone (alive or zombie)."""
        return [self.table[pid] for pid in self.pids(group=group, stray=False)]

    def active(self, group: str | None = None) -> list[SimProcess]:
        """Workers alive and never told to stop: those that count towards a target."""
        return [p for p in self.workers(group) if p.alive and not p.told_to_stop]

    # the trace ------------------------------------------------------------------------

    def mark(self) -> int:
        """A bookmark in the trace for the ``*_since`` helpers."""
        return len(self.trace)

    def steps_since(self, mark: int = 0) -> list[Step]:
        return self.trace[mark:]

    def events_since(self, mark: int = 0) -> list[Event]:
        return [step.event for step in self.trace[mark:]]

    def effects_since(self, mark: int = 0, kind: type[E] | None = None) -> list[E]:
        """Effects returned since ``mark``, in order, optionally only those of type ``kind``."""
        return [
            effect for step in self.trace[mark:] for effect in step.effects
            if kind is None or isinstance(effect, kind)
        ]  # type: ignore[misc]

    def forked_since(self, mark: int = 0) -> list[int]:
        """Pids the core was told it forked since ``mark``."""
        return [step.event.pid for step in self.trace[mark:] if isinstance(step.event, Forked)]

    def format_trace(self, last: int | None = None) -> str:
        """The trace, one step a line (logs and titles left out), for failure messages."""
        steps = self.trace if last is None else self.trace[-last:]
        return "\n".join(str(step) for step in steps)

    def replay(self) -> None:
        """Feed the recorded events to a fresh ``Supervisor``; it must answer the same.

        Raises ``AssertionError`` naming the first step whose effects (or error) differ.
        """
        fresh = Supervisor(self.initial_config)
        for step in self.trace:
            error: str | None = None
            try:
                effects: tuple[Effect, ...] = tuple(fresh.handle(step.event))
            except CoreError as raised:
                effects, error = (), str(raised)
            if effects != step.effects or error != step.error:
                raise AssertionError(
                    f"replay differs at step {step}:\n  first run: {list(step.effects)} "
                    f"error={step.error!r}\n  replay:    {list(effects)} error={error!r}"
                )
