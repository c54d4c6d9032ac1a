"""The pool under hypothesis: random configs, signals, commands, children and time.

``PoolMachine`` drives a ``SimOS`` (and so a ``Supervisor``) through any interleaving of
what the master can meet: every master signal, every command, workers finishing setup,
performing, heart-beating, crashing, hanging and exiting, children reaped in any order
with or without their last scoreboard reading, strays, failed forks, small and large
steps of time. ``pool_model.PoolChecker`` judges every step; one ``@invariant`` per
DESIGN invariant (``inv_n_*``, matched by number to the ``INV-n`` lines of
specs/master.md) asserts that nothing broke it. ``TestPool`` is the pytest test.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import event, note
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
)
from pool_model import GROUP_NAMES, PoolChecker, eighths, pool_configs

from prefork.core import (
    Boot,
    ChildExited,
    CoreError,
    Forked,
    ForkFailed,
    MasterState,
    Observed,
    PoolConfig,
    Reload,
    Reply,
    Scale,
    Sig,
    Signal,
    StartWorker,
    Status,
    StopAll,
    StopWorker,
    Tick,
    WorkerState,
)
from prefork.testing import ProcState, SimError, SimOS

M = MasterState
UP_SIGNALS = [Sig.HUP, Sig.WINCH, Sig.TTIN, Sig.TTOU, Sig.USR1, Sig.USR2, Sig.CONT, Sig.CHLD]
LEAVE_SIGNALS = [Sig.QUIT, Sig.TERM, Sig.INT]
SPEC = Path(__file__).resolve().parents[2] / "specs" / "master.md"
REPLAY_EVERY = 10

groups_or_none = st.none() | st.sampled_from([*GROUP_NAMES, "nosuch"])

events_after_stop = st.one_of(
    st.sampled_from(list(Sig)).map(Signal),
    st.builds(Boot, has_terminal=st.booleans()),
    st.builds(StartWorker, groups_or_none),
    st.builds(StopWorker, groups_or_none),
    st.just(StopAll()),
    st.builds(Scale, st.sampled_from(GROUP_NAMES), st.integers(-1, 5)),
    st.builds(Reload, st.just(PoolConfig())),
    st.builds(ChildExited, st.integers(100, 125), st.sampled_from([0, 1, -9])),
    st.builds(Observed, st.integers(100, 125), st.sampled_from(list(WorkerState)[:3])),
    st.builds(Forked, st.sampled_from(GROUP_NAMES), st.integers(0, 3), st.integers(100, 125)),
    st.builds(ForkFailed, st.sampled_from(GROUP_NAMES), st.integers(0, 3), st.just("EAGAIN")),
    st.builds(Tick, st.integers(0, 1000).map(float)),
)


def alive(self: PoolMachine) -> bool:
    return self.sim.state is not M.STOPPED


def may_leave(self: PoolMachine) -> bool:
    return alive(self) and self.may_stop


class PoolMachine(RuleBasedStateMachine):
    """A pool, its simulated children, and a checker judging every step."""

    children = Bundle("children")

    def __init__(self) -> None:
        super().__init__()
        self.sim: SimOS
        self.checker: PoolChecker
        self.may_stop = False
        self.invariant_calls = 0
        self.last_counts: dict[tuple[str, str], int] = {}

    # helpers -------------------------------------------------------------------------

    def _feed(self, what: str, action: Callable[[], object]) -> object:
        """Run an action that feeds the core; note what happened; return the new pids."""
        mark = self.sim.mark()
        try:
            action()
        finally:
            note(f"t={self.sim.now:g} {what}:\n  " + "\n  ".join(
                str(step) for step in self.sim.steps_since(mark)))
        return multiple(*self.sim.forked_since(mark))

    def _act(self, what: str, action: Callable[[int], None], pid: int, observe: bool) -> object:
        """Make child ``pid`` do something (a no-op if it cannot); maybe read its slot."""
        try:
            action(pid)
        except SimError as why:
            note(f"t={self.sim.now:g} {what} {pid}: not possible ({why})")
            return multiple()
        note(f"t={self.sim.now:g} {what} {pid}: {self.sim.table.get(pid)!r}")
        process = self.sim.table.get(pid)
        if observe and process is not None and not process.stray:
            return self._feed(f"observe {pid}", lambda: self.sim.observe(pid))
        return multiple()

    # boot ----------------------------------------------------------------------------

    @initialize(target=children, config=pool_configs(),
                has_terminal=st.sampled_from([False, False, True]),
                pid_space=st.sampled_from([8, 16, 32]))
    def boot(self, config: PoolConfig, has_terminal: bool, pid_space: int) -> object:
        note(f"config: {config}")
        self.sim = SimOS(config, pid_space=pid_space, strict=False)
        self.checker = PoolChecker(self.sim)
        return self._feed(f"boot (terminal={has_terminal})",
                          lambda: self.sim.boot(has_terminal=has_terminal))

    # signals and commands ---------------------------------------------------------------

    @precondition(alive)
    @rule(target=children, sig=st.sampled_from(UP_SIGNALS))
    def signal(self, sig: Sig) -> object:
        return self._feed(f"signal {sig}", lambda: self.sim.signal(sig))

    @precondition(lambda self: not self.may_stop)
    @rule()
    def allow_stopping(self) -> None:
        """QUIT, TERM, INT and StopAll end a run: they wait for this rule, so runs are long."""
        self.may_stop = True

    @precondition(may_leave)
    @rule(target=children, sig=st.sampled_from(LEAVE_SIGNALS))
    def stop_signal(self, sig: Sig) -> object:
        return self._feed(f"signal {sig}", lambda: self.sim.signal(sig))

    @precondition(may_leave)
    @rule(target=children)
    def stop_all(self) -> object:
        return self._feed("StopAll", lambda: self.sim.command(StopAll()))

    @precondition(alive)
    @rule(target=children, group=groups_or_none)
    def start_worker(self, group: str | None) -> object:
        return self._feed(f"StartWorker({group})", lambda: self.sim.command(StartWorker(group)))

    @precondition(alive)
    @rule(target=children, group=groups_or_none)
    def stop_worker(self, group: str | None) -> object:
        return self._feed(f"StopWorker({group})", lambda: self.sim.command(StopWorker(group)))

    @precondition(alive)
    @rule(target=children, group=st.sampled_from([*GROUP_NAMES, "nosuch"]),
          n=st.integers(-1, 7))
    def scale(self, group: str, n: int) -> object:
        return self._feed(f"Scale({group}, {n})", lambda: self.sim.command(Scale(group, n)))

    @precondition(alive)
    @rule(target=children, config=pool_configs())
    def reload(self, config: PoolConfig) -> object:
        return self._feed(f"Reload({config})", lambda: self.sim.command(Reload(config)))

    @precondition(alive)
    @rule(config=pool_configs())
    def write_config_file(self, config: PoolConfig) -> None:
        """The next HUP (with a config_file) reads this config."""
        note(f"the config file now holds {config}")
        self.sim.write_config_file(config)

    @precondition(alive)
    @rule()
    def break_config_file(self) -> None:
        """The next HUP (with a config_file) finds a file that does not validate."""
        note("the config file is now broken")
        self.sim.break_config_file("workers=-1: must be a whole number >= 0")

    @precondition(alive)
    @rule(request=st.integers(0, 3))
    def status(self, request: int) -> None:
        # What time alone brings (a back-off that ended since the last event spawns at the
        # next event) is dealt with first: the claim is that the Status itself changes
        # nothing (found by TestPool: a Status after a back-off ended replied with the
        # pool before the spawn its own settle made).
        if self.sim.now > self.sim.supervisor.now:
            self._feed("tick", self.sim.tick)
        mark = self.sim.mark()
        self._feed(f"Status({request})", lambda: self.sim.command(Status(request)))
        (reply,) = self.sim.effects_since(mark, Reply)
        assert reply.request == request
        assert reply.snapshot == self.sim.supervisor.snapshot(), "a Status changed the pool"

    # the children --------------------------------------------------------------------

    @precondition(alive)
    @rule(target=children, pid=children, observe=st.booleans())
    def finish_setup(self, pid: int, observe: bool) -> object:
        return self._act("finish_setup", self.sim.finish_setup, pid, observe)

    @precondition(alive)
    @rule(target=children, pid=children, observe=st.booleans())
    def start_perform(self, pid: int, observe: bool) -> object:
        return self._act("start_perform", self.sim.start_perform, pid, observe)

    @precondition(alive)
    @rule(target=children, pid=children, observe=st.booleans())
    def end_perform(self, pid: int, observe: bool) -> object:
        return self._act("end_perform", self.sim.end_perform, pid, observe)

    @precondition(alive)
    @rule(target=children, pid=children, observe=st.booleans())
    def fail_perform(self, pid: int, observe: bool) -> object:
        """A forked perform's child fails: the worker counts it and lives on."""
        return self._act("fail_perform", self.sim.fail_perform, pid, observe)

    @precondition(alive)
    @rule(target=children, pid=children, observe=st.booleans())
    def heartbeat(self, pid: int, observe: bool) -> object:
        return self._act("heartbeat", self.sim.heartbeat, pid, observe)

    @precondition(alive)
    @rule(target=children, pid=children, reason=st.sampled_from(["max_performs", "max_memory"]),
          observe=st.booleans())
    def ask_to_recycle(self, pid: int, reason: str, observe: bool) -> object:
        """A ready worker reached its limit and asks to be replaced; it works on."""
        mib = 250.0 if reason == "max_memory" else None
        return self._act(f"ask_to_recycle({reason})",
                         lambda p: self.sim.ask_to_recycle(p, reason, mib), pid, observe)

    @precondition(lambda self: alive(self) and any(
        p.state is ProcState.SPAWNING and not p.hung for p in self.sim.active()))
    @rule(target=children, data=st.data(),
          reason=st.sampled_from(["max_performs", "max_memory"]))
    def ready_and_asking_at_once(self, data: st.DataObject, reason: str) -> object:
        """A worker finishes its setup and asks to be recycled before the master's first
        reading of it (a job over max_memory from the start): one reading says both."""
        spawning = [p for p in self.sim.active()
                    if p.state is ProcState.SPAWNING and not p.hung]
        process = data.draw(st.sampled_from(spawning), label="worker")
        self.sim.finish_setup(process.pid)
        if not process.alive:  # told to QUIT while it set up: it is gone
            return multiple()
        mib = 250.0 if reason == "max_memory" else None
        self.sim.ask_to_recycle(process.pid, reason, mib)
        return self._feed(f"ready and asking {process.pid}",
                          lambda: self.sim.observe(process.pid))

    @precondition(alive)
    @rule(target=children, pid=children, mib=st.sampled_from([50.0, 150.0, 250.0, 300.0]))
    def sample_memory(self, pid: int, mib: float) -> object:
        """The master samples a worker's unique memory."""
        try:
            self.sim.process(pid)
        except SimError as why:
            note(f"sample_memory {pid}: {why}")
            return multiple()
        if self.sim.process(pid).stray:
            return multiple()
        return self._feed(f"sample_memory({pid}, {mib:g})",
                          lambda: self.sim.sample_memory(pid, mib))

    @precondition(alive)
    @rule(target=children, pid=children, status=st.sampled_from([1, 2, -11, 0]))
    def crash(self, pid: int, status: int) -> object:
        return self._act(f"crash({status})", lambda p: self.sim.crash(p, status), pid, False)

    @precondition(alive)
    @rule(target=children, pid=children, status=st.sampled_from([0, 1]))
    def exit_by_itself(self, pid: int, status: int) -> object:
        return self._act(f"exit({status})", lambda p: self.sim.exit(p, status), pid, False)

    @precondition(alive)
    @rule(target=children, pid=children)
    def hang(self, pid: int) -> object:
        return self._act("hang", self.sim.hang, pid, False)

    @precondition(lambda self: alive(self) and bool(self.sim.active()))
    @rule(target=children, data=st.data(), observe=st.booleans())
    def get_on_with_it(self, data: st.DataObject, observe: bool) -> object:
        """A worker takes its next natural step: setup done, perform started or ended."""
        process = data.draw(st.sampled_from(self.sim.active()), label="worker")
        ends = [self.sim.end_perform, self.sim.end_perform, self.sim.fail_perform]
        action = {ProcState.SPAWNING: self.sim.finish_setup,
                  ProcState.IDLE: self.sim.start_perform,
                  ProcState.PERFORMING: data.draw(st.sampled_from(ends), label="end")
                  }[process.state]
        return self._act(action.__name__, action, process.pid, observe)

    @precondition(lambda self: alive(self) and any(
        p.state is ProcState.IDLE and not (p.held or p.hung) for p in self.sim.active()))
    @rule(target=children, data=st.data(), sig=st.sampled_from([Sig.HUP, Sig.TTOU]),
          hang=st.booleans())
    def stop_before_the_perform_is_seen(self, data: st.DataObject, sig: Sig,
                                        hang: bool) -> object:
        """A worker starts a perform (and may hang in it), and a graceful stop comes
        before the master has read it: signals are handled before readings in one turn
        of the adapter's loop. The reading that follows must still set the deadline."""
        idle = [p for p in self.sim.active()
                if p.state is ProcState.IDLE and not (p.held or p.hung)]
        process = data.draw(st.sampled_from(idle), label="worker")
        self.sim.start_perform(process.pid)
        if hang:
            self.sim.hang(process.pid)
        forked = self._feed(f"signal {sig}", lambda: self.sim.signal(sig))
        self._feed(f"observe {process.pid}", lambda: self.sim.observe(process.pid))
        return forked

    @precondition(alive)
    @rule(target=children, pid=children)
    def observe(self, pid: int) -> object:
        return self._act("observe", lambda p: None, pid, True)

    @precondition(alive)
    @rule(target=children)
    def observe_all(self) -> object:
        return self._feed("observe all", self.sim.observe_all)

    @precondition(alive)
    @rule(target=children)
    def spawn_stray(self) -> object:
        try:
            pid = self.sim.spawn_stray()
        except SimError as why:
            note(f"spawn_stray: {why}")
            return multiple()
        note(f"t={self.sim.now:g} stray child {pid}")
        return multiple(pid)

    @precondition(alive)
    @rule(count=st.integers(1, 3))
    def fail_next_forks(self, count: int) -> None:
        note(f"the next {count} forks fail")
        self.sim.fail_next_forks(count)

    # reaping -------------------------------------------------------------------------

    @precondition(alive)
    @rule(target=children, pid=consumes(children), observe=st.booleans())
    def reap(self, pid: int, observe: bool) -> object:
        process = self.sim.table.get(pid)
        if process is None:
            return multiple()
        if not process.zombie:
            return multiple(pid)  # still running: back in the bundle
        return self._feed(f"reap {pid} (observe={observe})",
                          lambda: self.sim.reap(pid, observe=observe))

    @precondition(lambda self: alive(self) and bool(self.sim.zombies()))
    @rule(target=children, data=st.data(), observe=st.booleans())
    def reap_any(self, data: st.DataObject, observe: bool) -> object:
        pid = data.draw(st.sampled_from(self.sim.zombies()), label="zombie")
        return self._feed(f"reap {pid} (observe={observe})",
                          lambda: self.sim.reap(pid, observe=observe))

    @precondition(lambda self: alive(self) and bool(self.sim.zombies()))
    @rule(target=children)
    def reap_all(self) -> object:
        return self._feed("reap all", self.sim.reap_all)

    # time ----------------------------------------------------------------------------

    @rule(dt=eighths)
    def advance(self, dt: float) -> None:
        self.sim.advance(dt)
        note(f"t={self.sim.now:g} (+{dt:g}s)")

    @precondition(alive)
    @rule(target=children, dt=st.sampled_from([5.0, 10.0, 30.0, 61.0, 120.0]))
    def advance_far_and_tick(self, dt: float) -> object:
        self.sim.advance(dt)
        return self._feed(f"+{dt:g}s, tick", self.sim.tick)

    @precondition(alive)
    @rule(target=children)
    def tick(self) -> object:
        return self._feed("tick", self.sim.tick)

    @precondition(lambda self: alive(self) and self.sim.wake_at is not None)
    @rule(target=children)
    def tick_at_wake_up(self) -> object:
        assert self.sim.wake_at is not None
        self.sim.advance_to(self.sim.wake_at)
        return self._feed("tick at the wake-up", self.sim.tick)

    # after the end -------------------------------------------------------------------

    @precondition(lambda self: not alive(self))
    @rule(event=events_after_stop)
    def event_after_stop(self, event: object) -> None:
        note(f"after the stop: {event!r}")
        with pytest.raises(CoreError):
            self.sim.feed(event)  # type: ignore[arg-type]
        assert self.sim.state is M.STOPPED

    # invariants ----------------------------------------------------------------------

    def _clean(self, number: int) -> None:
        found = self.checker.violations.get(number)
        if found:
            note("trace (last 30 steps):\n" + self.sim.format_trace(last=30))
            raise AssertionError("\n".join(found))

    @invariant()
    def inv_1_convergence(self) -> None:
        problems = self.checker.convergence_problems()
        if problems:
            note("processes: " + repr(self.sim.workers()))
            note("trace (last 30 steps):\n" + self.sim.format_trace(last=30))
        assert not problems, "INV-1: " + "; ".join(problems)

    @invariant()
    def inv_2_graceful_means_graceful(self) -> None:
        self._clean(2)

    @invariant()
    def inv_3_master_stops_last(self) -> None:
        self._clean(3)
        if self.sim.state is M.STOPPED:
            assert not self.sim.workers(), f"INV-3: stopped with {self.sim.workers()}"
            assert self.sim.exit_code is not None, "INV-3: stopped without Exit"

    @invariant()
    def inv_4_no_stray_signals(self) -> None:
        self._clean(4)
        assert not self.sim.misdirected, f"INV-4: misdirected {self.sim.misdirected}"

    @invariant()
    def inv_5_no_spawning_while_leaving(self) -> None:
        self._clean(5)

    @invariant()
    def inv_6_bounded_crash_loops(self) -> None:
        self._clean(6)

    @invariant()
    def inv_7_bounds(self) -> None:
        self._clean(7)

    @invariant()
    def inv_9_bounded_stops(self) -> None:
        self._clean(9)
        problems = self.checker.sleeping_past_a_timeout()
        if problems:
            note("trace (last 30 steps):\n" + self.sim.format_trace(last=30))
        assert not problems, "; ".join(problems)

    @invariant()
    def inv_10_no_capacity_dip(self) -> None:
        self._clean(10)

    @invariant()
    def inv_11_failures_are_counted_once(self) -> None:
        self._clean(11)

    @invariant()
    def bookkeeping_matches_a_recount(self) -> None:
        """The core's incremental indexes agree with a count from scratch (not a DESIGN
        invariant: what lets one event cost the same with 4 workers or 256)."""
        errors = self.sim.supervisor.recount()
        assert not errors, f"the core's bookkeeping is off: {errors}"

    @invariant()
    def counters_never_go_down(self) -> None:
        """The metrics' counters (the core's tally, and each pool's performs: its live
        workers' plus those of the workers gone) only ever rise (not a DESIGN invariant:
        what a Prometheus counter must do)."""
        sim = getattr(self, "sim", None)
        if sim is None:
            return
        snapshot = sim.supervisor.snapshot()
        counts: dict[tuple[str, str], int] = {}
        for group in snapshot.counts:
            live = sum(w.performs for w in snapshot.workers if w.group == group.group)
            counts[group.group, "performs"] = group.performs_of_ended + live
            counts[group.group, "restarts"] = group.restarts
            counts[group.group, "perform_failures"] = group.perform_failures
            for field in ("exits", "kills", "recycles"):
                for label, n in getattr(group, field):
                    counts[group.group, f"{field}:{label}"] = n
        fallen = {key: (was, counts.get(key, 0)) for key, was in self.last_counts.items()
                  if counts.get(key, 0) < was}
        assert not fallen, f"counters went down (was, now): {fallen}"
        self.last_counts = counts

    @invariant()
    def inv_8_determinism(self) -> None:
        self.invariant_calls += 1
        if self.invariant_calls % REPLAY_EVERY == 0:
            self.sim.replay()

    def teardown(self) -> None:
        sim = getattr(self, "sim", None)
        if sim is None:
            return
        sim.replay()  # INV-8 over the whole run
        # what the run reached, for --hypothesis-show-statistics
        states = {step.after for step in sim.trace}
        for state in (M.PAUSED, M.RELOADING, M.DRAINING, M.TERMINATING, M.STOPPED):
            if state in states:
                event(f"reached {state}")
        if self.checker.gave_up:
            event("gave up (max_restarts)")
        if len({p.pid for p in sim.processes}) < len(sim.processes):
            event("a pid was recycled")
        if any(Sig.KILL in p.signals for p in sim.processes):
            event("a worker got KILL")
        if any(Sig.ABRT in p.signals for p in sim.processes):
            event("a worker timed out (ABRT)")
        if any(Sig.ABRT in p.signals and p.signals[0] is not Sig.ABRT for p in sim.processes):
            event("a worker timed out while it was being stopped")
        if any(p.failures for p in sim.processes):
            event("a perform failed")
        if sim.config_reads:
            event("HUP read the config file")
        if any(isinstance(step.event, ForkFailed) for step in sim.trace):
            event("a fork failed")
        if any(p.stray and p.state is ProcState.REAPED for p in sim.processes):
            event("a stray was reaped")
        event(f"events fed: {len(sim.trace) // 20 * 20}+")
        event(f"INV-1 checked a settled pool: {min(self.checker.settled_checks, 10) // 5 * 5}+")


TestPool = PoolMachine.TestCase
TestPool.__doc__ = "The pool under hypothesis: every DESIGN invariant after every step."


# regressions and the link to specs/ -----------------------------------------------------


def test_tick_after_stopped_raises() -> None:
    """Time does not pass in stopped (the adapter exits on Exit): a Tick is refused too.

    Found while writing PoolMachine (the stopped core took a Tick and answered []); the
    core raises since 1c4c3ad.
    """
    sim = SimOS(PoolConfig.of(workers=0))
    sim.boot()
    sim.signal(Sig.QUIT)
    assert sim.state is M.STOPPED
    with pytest.raises(CoreError):
        sim.tick()


def test_give_up_with_a_spawn_unanswered() -> None:
    """Two spawns at boot, the first fork fails, max_restarts=0: give up, cleanly.

    Found by TestPool on the first core (CoreError "has no pid yet, cannot send TERM":
    the give-up fired terminate_requested on the worker whose Forked was still on its
    way); fixed in b15cd92 ("never act on unforked workers").
    """
    sim = SimOS(PoolConfig.of(workers=2, max_restarts=0, setup_timeout=None))
    sim.fail_next_forks(1)
    sim.boot()  # Spawn(0), Spawn(1); ForkFailed(0) is answered first and gives up
    assert sim.state is M.TERMINATING
    survivor = sim.process(sim.pids()[0])
    assert survivor.slot == 1 and Sig.TERM in survivor.signals
    sim.reap_all()
    assert sim.state is M.STOPPED and sim.exit_code == 1


INV_LINE = re.compile(r"^\s*(?:[-*]\s+|#{1,6}\s+)?[*_`]*INV-(\d+)\b\s*([^:\n]*):", re.MULTILINE)
INV_FUNC = re.compile(r"^inv_(\d+)_(\w+)$")


def test_every_spec_invariant_has_a_check_and_back() -> None:
    """specs/master.md's INV-n lines and PoolMachine's inv_n_* invariants match both ways.

    By number; and every word of a check's name is a word of the spec's name for it.
    """
    if not SPEC.exists():
        pytest.skip(f"{SPEC} is not written yet")
    in_spec = {int(n): name.strip(" *_`").lower()
               for n, name in INV_LINE.findall(SPEC.read_text(encoding="utf-8"))}
    checks = {int(m.group(1)): m for name in dir(PoolMachine) if (m := INV_FUNC.match(name))}
    assert in_spec, f"no INV-n lines in {SPEC}"
    missing = sorted(in_spec.keys() - checks.keys())
    unspecified = sorted(checks[n].group(0) for n in checks.keys() - in_spec.keys())
    assert not missing, f"INV-{missing} of specs/master.md have no inv_n_* in PoolMachine"
    assert not unspecified, f"{unspecified} name no INV-n of specs/master.md"
    for number, match in checks.items():
        function = getattr(PoolMachine, match.group(0))
        assert getattr(function, "hypothesis_stateful_invariant", None), match.group(0)
        words = set(re.findall(r"\w+", in_spec[number]))
        assert set(match.group(2).split("_")) <= words, (
            f"{match.group(0)} does not match INV-{number} {in_spec[number]!r}")
