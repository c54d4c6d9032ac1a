"""The oracle of the property tests: what a pool must do, checked on every step of a SimOS.

``PoolChecker`` listens to a ``SimOS`` (``sim.listeners``) and sees each step after the
core answered and before the sim carried out the effects, so it judges every decision in
the world the core decided in. It keeps its own small model (the targets the requests
asked for, when each worker was told to stop and so when it may be KILLed, each slot's
crash streak and the back-off it earns, the crash times for the restart intensity) and
files what it finds under the number of the DESIGN invariant it breaks; the state
machine's ``inv_n_*`` invariants assert that their list is empty.

The model is written from DESIGN.md and the ``PoolConfig`` docstring, not from the core's
code: the back-off below is the documented policy, so a core that computes it wrong
disagrees with it.
"""

from __future__ import annotations

from collections import Counter, defaultdict

from hypothesis import strategies as st

from prefork.core import (
    ChildExited,
    ConfigLoaded,
    ConfigRejected,
    Exit,
    Forked,
    ForkFailed,
    GroupConfig,
    Kill,
    Log,
    MasterState,
    MemorySampled,
    Observed,
    PoolConfig,
    Reload,
    Scale,
    Sig,
    Signal,
    Spawn,
    StartWorker,
    StopWorker,
    Tick,
    WorkerState,
)
from prefork.testing import SimOS, SimProcess, Step

M = MasterState
UP = frozenset({M.RUNNING, M.PAUSED, M.RELOADING})
LEAVING = frozenset({M.DRAINING, M.TERMINATING})
GONE = LEAVING | {M.STOPPED}
SPAWNING_STATES = frozenset({M.RUNNING, M.RELOADING})
STOP_SIGNALS = frozenset({Sig.QUIT, Sig.TERM, Sig.ABRT, Sig.KILL})
GROUP_NAMES = ("default", "mail", "sms")
CONFIG_FILE = "pool.toml"
DUMP_GRACE = 1.0  # specs/worker.md: KILL follows a timeout's ABRT after the dump grace
READY = frozenset({WorkerState.IDLE, WorkerState.PERFORMING})
# set up and not told to stop: a recycled worker's successor may ask in turn at once
WORKING = READY | {WorkerState.RETIRING}


def expected_backoff(failures: int, config: PoolConfig) -> float:
    """The documented policy: the first crash of a slot is replaced at once, the second
    after ``restart_backoff``, each further one after twice the previous delay, capped at
    ``restart_backoff_max``."""
    if failures <= 1:
        return 0.0
    doublings = min(failures - 2, 1000)  # past the cap long before; and no float overflow
    group = config.groups[0]
    return min(group.restart_backoff_max, group.restart_backoff * 2.0 ** doublings)


def _intensity(config: PoolConfig) -> tuple[int | None, float]:
    """The restart intensity the generated configs give every pool alike."""
    group = config.groups[0]
    return group.max_restarts, group.restart_period


def _scales(group: GroupConfig) -> bool:
    return group.min_spare is not None or group.max_spare is not None


def _reload_target(group: GroupConfig, running: int | None) -> int:
    """A reload's target, as docs/supervision.md says it."""
    if not _scales(group) or running is None:
        return group.workers
    top = running if group.max_workers is None else group.max_workers
    return max(group.min_workers, min(running, top))


# strategies ---------------------------------------------------------------------------

eighths = st.integers(1, 24).map(lambda n: n / 8)


@st.composite
def pool_configs(draw: st.DrawFn) -> PoolConfig:
    """A small pool: 1-2 groups of 0-3 workers, short timers, every option on or off."""
    names = draw(st.lists(st.sampled_from(GROUP_NAMES), min_size=1, max_size=2, unique=True))
    counts = [draw(st.integers(0, 3)) for _ in names]
    backoff = draw(st.sampled_from([0.125, 0.25, 0.5, 1.0, 2.0]))
    most = draw(st.none() | st.integers(max(counts), 5))
    least = draw(st.sampled_from([0, 0, 0, min(counts)]))
    # spare-worker scaling, sometimes (min_spare needs a ceiling; max_spare alone shrinks)
    spares = draw(st.sampled_from([(None, None), (None, None), (None, 1), (0, 1), (1, 2)]))
    if most is None and spares[0] is not None:
        spares = (None, spares[1])
    return PoolConfig.of(
        groups=dict(zip(names, counts, strict=True)),
        timeout=draw(st.none() | st.sampled_from([1.0, 5.0, 20.0])),
        setup_timeout=draw(st.none() | st.sampled_from([2.0, 10.0, 60.0])),
        graceful_timeout=draw(st.sampled_from([0.0, 1.0, 5.0, 30.0])),
        kill_timeout=draw(st.sampled_from([0.0, 1.0, 10.0])),
        graceful_term=draw(st.booleans()),
        max_workers=most, min_workers=least, min_spare=spares[0], max_spare=spares[1],
        idle_timeout=draw(st.sampled_from([0.5, 2.0])), scale_interval=0.25,
        max_performs=draw(st.none() | st.integers(1, 3)),
        max_performs_jitter=draw(st.sampled_from([0, 2])),
        max_memory=draw(st.none() | st.sampled_from([100, 200])),
        restart_backoff=backoff,
        restart_backoff_max=backoff * draw(st.sampled_from([1, 2, 4, 8, 16])),
        max_restarts=draw(st.sampled_from([None, None, None, 0, 1, 3])),
        restart_period=draw(st.sampled_from([1.0, 10.0, 60.0])),
        config_file=draw(st.sampled_from([None, None, CONFIG_FILE])),
    )


# the checker --------------------------------------------------------------------------


class PoolChecker:
    """Judges every step of ``sim`` against the DESIGN invariants (see the module doc)."""

    def __init__(self, sim: SimOS) -> None:
        self.sim = sim
        self.config = sim.initial_config  # the config in force before the current step
        self.targets: dict[str, int] = {g.name: g.workers for g in sim.initial_config.groups}
        self.violations: dict[int, list[str]] = defaultdict(list)
        self.kill_by: dict[int, float] = {}  # process serial -> when KILL is due at the latest
        self.settings_of: dict[int, GroupConfig] = {}  # process serial -> its group options
        self.slots: dict[tuple[str, int], tuple[int, float]] = {}  # -> (streak, respawn at)
        # each pool's failure times, for its own restart intensity
        self.crash_times: dict[str, list[float]] = defaultdict(list)
        self.policy_since = 0.0  # when max_restarts/restart_period last changed
        self.unanswered = 0  # Spawns not yet answered with Forked/ForkFailed
        self.horizon = 0.0  # no back-off runs past this time
        self.gave_up = False
        self.settled_checks = 0  # how often INV-1 found the pool settled and checked it
        self.exits: list[int] = []
        # INV-9: process serial -> its setup or perform deadline, as the readings given to
        # the core set it; when it was sent ABRT; those the master gave up on (ABRT, KILL)
        self.timeout_at: dict[int, float | None] = {}
        self.aborted_at: dict[int, float] = {}
        self.given_up: set[int] = set()
        # INV-11: failures by class, as the documented classes count them
        self.failures: Counter[str] = Counter()
        self.failures_seen: dict[int, int] = {}  # process serial -> highest count read
        # back-off: process serial -> when the core first read it idle or performing
        self.ready_at: dict[int, float] = {}
        # INV-10: the pids the core held retiring (recycled, waiting for a successor)
        # after the previous step, and the serials of workers recycled at all
        self.retiring: set[int] = set()
        self.recycled: set[int] = set()
        sim.listeners.append(self.on_step)

    def flag(self, invariant: int, step: Step, message: str) -> None:
        self.violations[invariant].append(f"INV-{invariant}: {message}\n    at {step}")

    # one step ------------------------------------------------------------------------

    def on_step(self, step: Step) -> None:
        if step.error is not None:
            return  # the rule that fed the event raises, or expected the error
        sup = self.sim.supervisor
        if isinstance(step.event, Forked | ForkFailed):
            self.unanswered -= 1
        self.unanswered += sum(isinstance(e, Spawn) for e in step.effects)
        if step.before in UP:
            self._track_request(step)
        self._check_bounded_stops(step)
        self._account_for_crashes(step)
        self._check_failure_counts(step)
        sent = self._check_kills(step)
        self._check_spawns(step)
        self._check_give_up(step)
        self._check_stop(step)
        self._check_targets(step)
        self._check_no_capacity_dip(step)
        self._track_group_settings()
        for serial, signo in sent:
            if signo in (Sig.QUIT, Sig.TERM, Sig.ABRT):
                settings = self.settings_of[serial]
                grace = {Sig.QUIT: settings.graceful_timeout, Sig.TERM: settings.kill_timeout,
                         Sig.ABRT: DUMP_GRACE}[signo]
                due = sup.now + grace
                self.kill_by[serial] = min(self.kill_by.get(serial, due), due)
        self.config = sup.config

    def _track_group_settings(self) -> None:
        """Each worker's group options: its group's in the config in force, or, once a
        reload removed its group, the last it had."""
        config = self.sim.supervisor.config
        names = set(config.group_names)
        for process in self.sim.workers():
            if process.group in names:
                self.settings_of[process.serial] = config.group(process.group)

    def _track_request(self, step: Step) -> None:
        """INV-7's model: the target each accepted request asks for, within the bounds."""
        event, config = step.event, self.sim.supervisor.config
        first = next(iter(self.targets))

        def clamp(n: int) -> int:
            most = config.groups[0].max_workers
            top = n if most is None else min(n, most)
            return max(config.groups[0].min_workers, top)

        if isinstance(event, Signal) and event.signo in (Sig.TTIN, Sig.TTOU):
            delta = 1 if event.signo is Sig.TTIN else -1
            self.targets[first] = clamp(self.targets[first] + delta)
        elif isinstance(event, StartWorker | StopWorker):
            group = event.group or first
            if group in self.targets:
                delta = 1 if isinstance(event, StartWorker) else -1
                self.targets[group] = clamp(self.targets[group] + delta)
        elif isinstance(event, Scale):
            if event.group in self.targets:
                self.targets[event.group] = clamp(event.n)
        elif isinstance(event, Reload | ConfigLoaded):
            # a pool that scales keeps its target within its new bounds; others take
            # their workers (docs/supervision.md)
            self.targets = {g.name: _reload_target(g, self.targets.get(g.name))
                            for g in event.config.groups}
            self.slots = {key: v for key, v in self.slots.items() if key[0] in self.targets}
            # a dropped pool's failures are forgotten with it
            self.crash_times = defaultdict(list, {
                group: times for group, times in self.crash_times.items()
                if group in self.targets})
            policy = (_intensity(event.config), _intensity(self.config))
            if policy[0] != policy[1]:
                # How much crash history a new period sees is the core's choice (it
                # forgets crashes older than the period in force when it looked): the
                # "must give up" check starts afresh, "must not give up" keeps it all.
                self.policy_since = self.sim.supervisor.now

    def _account_for_crashes(self, step: Step) -> None:
        """INV-6's and INV-11's model: a crash streak per slot, the back-off it earns, and
        every failure by its class (specs/worker.md's table).

        A crash is a fork that fails, a worker that exits unasked (unless it retired: exit
        0 once the core saw it ready, or after some performs), or a setup or perform that
        times out (counted when the core sends ABRT, so the replacement is backed off
        too). A failed perform (a rise of the worker's count) counts toward the intensity
        only. A reading of a worker that has done performs, or the exit of a live one
        that has, ends its slot's streak; so does a crash of a worker that had been ready
        (since the core's first reading of it idle or performing) for
        ``restart_backoff_max``; a worker never read ready never ran long enough.
        """
        event, now, process = step.event, self.sim.supervisor.now, step.process
        if isinstance(event, ForkFailed):
            self.failures["fork failed"] += 1
            self._crash(step, (event.group, event.slot), uptime=None, performs=0)
        elif isinstance(event, Tick):
            for effect in step.effects:
                timed_out = self.sim.table.get(effect.pid) if (
                    isinstance(effect, Kill) and effect.signo is Sig.ABRT) else None
                if timed_out is not None and not timed_out.stray:
                    ready = timed_out.reported_state in READY
                    self.failures["timed out" if ready else "setup failed"] += 1
                    # performs seen while it was live ended its slot's streak then; a
                    # worker already stopping has a successor, whose failures count on
                    performs = 0 if timed_out.told_to_stop else timed_out.reported_performs
                    self._crash(step, self._slot(timed_out), uptime=self._up(timed_out),
                                performs=performs)
        elif process is None or process.stray:
            return
        elif isinstance(event, Observed):
            if event.state in READY:
                self.ready_at.setdefault(process.serial, now)
            seen = self.failures_seen.get(process.serial, 0)
            if event.failures > seen:
                self.failures_seen[process.serial] = event.failures
                self.failures["perform failed"] += event.failures - seen
                self._count_toward_intensity(process.group, now, event.failures - seen)
            if event.recycle is not None and event.state in READY \
                    and not process.told_to_stop:
                self.recycled.add(process.serial)
            live = not (process.told_to_stop or process.serial in self.recycled)
            if process.reported_performs > 0 and live:
                self.slots.pop(self._slot(process), None)
        elif isinstance(event, MemorySampled):
            if process.serial in self.recycled or process.reported_state not in READY:
                return
            limit = self.settings_of[process.serial].max_memory
            if limit is not None and event.mib > limit and not process.told_to_stop:
                self.recycled.add(process.serial)
        elif isinstance(event, ChildExited) and not process.told_to_stop:
            ready = process.reported_state in READY
            if process.status == 0 and (ready or process.reported_performs > 0):
                # it retired by itself, having worked (a recycled worker is not live:
                # its slot's streak is its successor's)
                if process.reported_performs > 0 and process.serial not in self.recycled:
                    self.slots.pop(self._slot(process), None)
            else:
                self.failures["setup failed" if not ready else
                              "killed" if event.status < 0 else "crashed"] += 1
                self._crash(step, self._slot(process), uptime=self._up(process),
                            performs=process.reported_performs)

    def _check_failure_counts(self, step: Step) -> None:
        """INV-11: the core counted every failure once, by its class, as the model did."""
        counted = {str(outcome): n for outcome, n in
                   self.sim.supervisor.restarts.counted.items() if n}
        if counted != dict(+self.failures):
            self.flag(11, step, f"the core counted failures {counted}, the classes say "
                                f"{dict(+self.failures)}")
            self.failures = Counter(counted)  # one report per discrepancy

    def _check_bounded_stops(self, step: Step) -> None:
        """INV-9: a passed setup or perform timeout is answered with ABRT at the first tick
        at or after it, and KILL within the dump grace plus one tick; a worker sent ABRT is
        never live again. The deadlines come from what the core was told (Forked, and
        the readings, which set them while a worker stops too)."""
        sup, event, now = self.sim.supervisor, step.event, self.sim.supervisor.now
        process = step.process
        if process is not None and not process.stray:
            settings = self.settings_of.get(process.serial)
            if isinstance(event, Forked):
                settings = sup.config.group(process.group)
                setup = settings.setup_timeout
                self.timeout_at[process.serial] = None if setup is None else now + setup
            elif isinstance(event, Observed) and process.serial not in self.given_up:
                assert settings is not None
                if event.state is WorkerState.PERFORMING:
                    self.timeout_at[process.serial] = (
                        None if settings.timeout is None else event.heartbeat_at
                        + settings.timeout)
                elif event.state is WorkerState.IDLE:
                    self.timeout_at[process.serial] = None
        answered = {(e.pid, e.signo) for e in step.effects if isinstance(e, Kill)}
        for pid, candidate in self.sim.table.items():
            serial = candidate.serial
            if candidate.stray:
                continue
            hard = {(pid, Sig.ABRT), (pid, Sig.KILL)} & answered
            due = self.timeout_at.get(serial)
            if isinstance(event, Tick) and serial not in self.given_up and due is not None \
                    and due <= now and not hard:
                self.flag(9, step, f"{candidate!r}: its timeout passed at t={due:g}, no "
                                   "ABRT or KILL")
            aborted = self.aborted_at.get(serial)
            if (isinstance(event, Tick) and aborted is not None
                    and aborted + DUMP_GRACE <= now and Sig.KILL not in candidate.signals
                    and (pid, Sig.KILL) not in answered):
                self.flag(9, step, f"{candidate!r}: ABRT at t={aborted:g}, no KILL by "
                                   f"t={now:g}")
            if (pid, Sig.ABRT) in answered:
                self.aborted_at.setdefault(serial, now)
            if hard:
                self.given_up.add(serial)
                self.timeout_at[serial] = None
            worker = sup.worker_by_pid(pid)
            if serial in self.aborted_at and worker is not None and worker.is_active:
                self.flag(9, step, f"{candidate!r} was sent ABRT and is live again")

    @staticmethod
    def _slot(process: SimProcess) -> tuple[str, int]:
        assert process.group is not None and process.slot is not None
        return (process.group, process.slot)

    def _count_toward_intensity(self, group: str | None, now: float, count: int = 1) -> None:
        """A failure counts toward its pool's intensity; a pool a reload dropped has none."""
        if group in self.sim.supervisor.config.group_names:
            self.crash_times[group] += [now] * count

    def _up(self, process: SimProcess) -> float | None:
        """How long the core has known ``process`` ready (``None``: never)."""
        since = self.ready_at.get(process.serial)
        return None if since is None else self.sim.supervisor.now - since

    def _crash(self, step: Step, key: tuple[str, int], *, uptime: float | None,
               performs: int) -> None:
        config, now = self.sim.supervisor.config, self.sim.supervisor.now
        streak = self.slots.get(key, (0, 0.0))[0]
        ran_long = uptime is not None and uptime >= config.groups[0].restart_backoff_max
        if performs > 0 or ran_long:
            streak = 0
        streak += 1
        delay = expected_backoff(streak, config)
        self.slots[key] = (streak, now + delay)
        self._count_toward_intensity(key[0], now)
        self.horizon = max(self.horizon, now + delay)
        if delay > 0 and not any(isinstance(e, Log) and e.level in ("warning", "error")
                                 for e in step.effects):
            self.flag(6, step, f"slot {key} backs off {delay:g}s without saying why")

    def _check_kills(self, step: Step) -> list[tuple[int, Sig]]:
        """INV-4 (whom a signal may reach) and INV-2 (when a stop may turn hard)."""
        now, after = self.sim.supervisor.now, step.after
        sent: list[tuple[int, Sig]] = []
        for effect in step.effects:
            if not isinstance(effect, Kill):
                continue
            process = self.sim.table.get(effect.pid)
            if process is None or process.stray:
                whom = "a stray" if process is not None else "no unreaped child of the core"
                self.flag(4, step, f"{effect!r} targets {whom}")
                continue
            signo = effect.signo
            if signo in STOP_SIGNALS and (signo in process.signals
                                          or (process.serial, signo) in sent):
                self.flag(4, step, f"{effect!r} sent twice to {process!r}")
            sent.append((process.serial, signo))
            if signo is Sig.TERM and after is not M.TERMINATING:
                self.flag(2, step, f"{effect!r} outside a quick stop (master {after})")
            if signo is Sig.KILL:
                due = self.kill_by.get(process.serial)
                if due is None:
                    self.flag(2, step, f"{effect!r} to {process!r}, never asked to stop")
                elif now < due:
                    self.flag(2, step, f"{effect!r} at t={now:g}, before its grace ends at "
                                       f"t={due:g}")
        signalled = {(serial, signo) for serial, signo in sent}
        if step.before is not M.DRAINING and after is M.DRAINING:
            for process in self.sim.workers():
                now_told = {sig for serial, sig in sent if serial == process.serial}
                if not process.told_to_stop and Sig.QUIT not in now_told:
                    self.flag(2, step, f"the drain sent no QUIT to {process!r}")
        if step.before is not M.TERMINATING and after is M.TERMINATING:
            hard = {Sig.TERM, Sig.ABRT, Sig.KILL}
            for process in self.sim.workers():
                got = set(process.signals) | {sig for serial, sig in sent
                                              if serial == process.serial}
                if not hard & got:
                    self.flag(2, step, f"the quick stop sent no TERM to {process!r}")
        if isinstance(step.event, Tick):
            for process in self.sim.workers():
                due = self.kill_by.get(process.serial)
                if (due is not None and due <= now and Sig.KILL not in process.signals
                        and (process.serial, Sig.KILL) not in signalled):
                    self.flag(2, step, f"{process!r} survives past t={due:g} without KILL")
        return sent

    def _check_no_capacity_dip(self, step: Step) -> None:
        """INV-10: while running or reloading, a recycled worker is told to stop only once
        a newer worker of its slot works (idle, performing, or retiring in turn), unless
        the master stops, reloads, pauses or shrinks its group, or the worker keeps
        growing inside a perform (its own sample)."""
        sup, event = self.sim.supervisor, step.event
        retiring, self.retiring = self.retiring, {
            w.pid for w in sup.workers if w.state is WorkerState.RETIRING}
        per_slot = Counter((w.group, w.slot) for w in sup.workers
                           if w.state is WorkerState.RETIRING)
        for key, n in per_slot.items():
            if n > 1:  # each successor replaces the one before it: no pile-up
                self.flag(10, step, f"slot {key} holds {n} recycled workers")
        if step.before not in SPAWNING_STATES or step.after not in SPAWNING_STATES:
            return
        if isinstance(event, Reload | ConfigLoaded | ConfigRejected | StopWorker | Scale) or (
                isinstance(event, Signal) and event.signo in (Sig.HUP, Sig.TTOU)):
            return
        for effect in step.effects:
            if not (isinstance(effect, Kill) and effect.signo in (Sig.QUIT, Sig.TERM)):
                continue
            process = self.sim.table.get(effect.pid)
            # recycled (before this step or by it), and told to stop for the first time
            if (process is None or process.stray or process.told_to_stop
                    or process.serial not in self.recycled):
                continue
            if (isinstance(event, MemorySampled) and event.pid == effect.pid
                    and effect.pid in retiring):
                continue  # over max_memory and still growing inside one perform
            group, slot = self._slot(process)
            if slot >= sup.targets.get(group, 0):
                continue
            stopped = sup.worker_by_pid(effect.pid)
            if stopped is None or not any(
                    w.group == group and w.slot == slot and w.serial > stopped.serial
                    and w.state in WORKING for w in sup.workers):
                self.flag(10, step, f"{effect!r}: {process!r} was recycled and told to "
                                    "stop before a newer worker of its slot was working")

    def _check_spawns(self, step: Step) -> None:
        """INV-5 (no spawning while leaving) and INV-6 (no respawn before its back-off)."""
        now = self.sim.supervisor.now
        for effect in step.effects:
            if not isinstance(effect, Spawn):
                continue
            if step.before in GONE or step.after in GONE:
                self.flag(5, step, f"{effect!r} while {step.before} -> {step.after}")
            due = self.slots.get((effect.group, effect.slot), (0, 0.0))[1]
            if now < due:
                self.flag(6, step, f"{effect!r} at t={now:g}, its back-off runs to t={due:g}")

    def _check_give_up(self, step: Step) -> None:
        """INV-6: the restart intensity (more than max_restarts in restart_period: give up)."""
        sup, event = self.sim.supervisor, step.event
        config, now = sup.config, sup.now
        limit, period = _intensity(config)
        # the pool nearest its limit (the options are the same in every pool here)
        window = max(([t for t in times if t > now - period]
                      for times in self.crash_times.values()), key=len, default=[])
        quick = isinstance(event, Signal) and event.signo in (Sig.TERM, Sig.INT)
        exit_one = any(isinstance(e, Exit) and e.code == 1 for e in step.effects)
        gave_up = step.before in UP and not quick and (
            step.after is M.TERMINATING or (step.after is M.STOPPED and exit_one))
        if gave_up:
            self.gave_up = True
            if limit is None or len(window) <= limit:
                self.flag(6, step, f"gave up after {len(window)} crashes in "
                                   f"{period:g}s (max_restarts={limit})")
            if not any(isinstance(e, Log) and e.level == "error" for e in step.effects):
                self.flag(6, step, "gave up without saying why")
        elif limit is not None and step.after in SPAWNING_STATES and not self.unanswered:
            # (the core gives up once every Spawn it asked for is answered)
            recent = [t for t in window if t >= self.policy_since]
            if len(recent) > limit:
                self.flag(6, step, f"{len(recent)} crashes in {period:g}s "
                                   f"(max_restarts={limit}) and the master carries on")

    def _check_stop(self, step: Step) -> None:
        """INV-3: stopped only with every worker reaped, once, with the right code; for good."""
        if step.before is M.STOPPED and step.after is not M.STOPPED:
            self.flag(3, step, "the master left stopped")
        exits = [e.code for e in step.effects if isinstance(e, Exit)]
        self.exits += exits
        if exits and step.after is not M.STOPPED:
            self.flag(3, step, f"Exit{exits} while {step.after}")
        if len(self.exits) > 1:
            self.flag(3, step, f"Exit more than once: {self.exits}")
        for code in exits:
            if code != (1 if self.gave_up else 0):
                self.flag(6 if self.gave_up else 3, step,
                          f"Exit({code}) after {'giving up' if self.gave_up else 'a clean stop'}")
        if step.after is M.STOPPED and step.before is not M.STOPPED:
            if self.sim.workers():
                self.flag(3, step, f"stopped with unreaped workers {self.sim.workers()}")
            if not exits:
                self.flag(3, step, "stopped without Exit")
        if step.after in LEAVING and not self.sim.workers():
            self.flag(3, step, f"every worker is reaped, yet the master is still {step.after}")

    def _check_targets(self, step: Step) -> None:
        """INV-7: targets stay within min_workers..max_workers and are what the requests
        asked, or what the scaling rule of a pool that scales said in a ``rescaled`` line."""
        sup = self.sim.supervisor
        top, least = sup.config.groups[0].max_workers, sup.config.groups[0].min_workers
        for group, n in sup.targets.items():
            if n < least or (top is not None and n > top):
                self.flag(7, step, f"group {group} target {n} outside {least}..{top}")
        said = {dict(e.fields).get("pool"): dict(e.fields).get("to") for e in step.effects
                if isinstance(e, Log) and dict(e.fields).get("event") == "rescaled"}
        for group, n in said.items():
            if group in self.targets and _scales(sup.config.group(group)):
                self.targets[group] = n
        if sup.targets != self.targets:
            self.flag(7, step, f"targets {sup.targets}, the requests asked for {self.targets}")

    def sleeping_past_a_timeout(self) -> list[str]:
        """INV-9 between steps: the core has asked to be woken by every setup or perform
        deadline it was told of (a core that does not know of one would sleep past it,
        and only a tick in between would show it)."""
        sim = self.sim
        if sim.state is M.STOPPED:
            return []
        problems = []
        for process in sim.workers():
            due = self.timeout_at.get(process.serial)
            if due is None or process.serial in self.given_up:
                continue
            if sim.wake_at is None or sim.wake_at > max(due, sim.supervisor.now):
                problems.append(f"INV-9: {process!r} times out at t={due:g}, the core "
                                f"sleeps until {sim.wake_at}")
        return problems

    # INV-1, on the state between steps -------------------------------------------------

    def convergence_problems(self) -> list[str]:
        """INV-1: running and settled, each group has exactly its target of active workers.

        Settled: no zombie waits to be reaped, and the core has seen a time at which every
        back-off has run out. Always: never more than the target while up, none paused.
        """
        sim, sup = self.sim, self.sim.supervisor
        if sup.state not in UP:
            return []
        # a recycled worker works on beside its replacement: it is not counted
        counts = Counter(p.group for p in sim.active() if p.serial not in self.recycled)
        problems = [f"group {g}: {n} active workers, target {self.targets.get(g, 0)}"
                    for g, n in counts.items() if n > self.targets.get(g, 0)]
        if sup.state is M.PAUSED and counts:
            problems.append(f"paused with active workers {dict(counts)}")
        settled = (sup.state is M.RUNNING and not sim.zombies(stray=False)
                   and sup.now >= self.horizon)
        if settled:
            self.settled_checks += 1
            problems += [f"settled at t={sup.now:g}: group {g} has {counts[g]} active "
                         f"workers, target {n}"
                         for g, n in self.targets.items() if counts[g] != n]
        return problems
