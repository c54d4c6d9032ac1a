"""Spare-worker scaling on the simulated OS: bounds, no oscillation, a growth rate, settling.

The world: a pool that scales, and a load of B busy workers that changes in phases. The
test is the scheduler, as the adapter would be with its scans: every ``step`` seconds it
finishes the setups whose time has come (each worker's setup takes its own drawn time),
makes exactly min(B, ready) of the pool's live workers perform (a worker told to stop
finishes its perform and exits, and its work goes to another), reaps, reads every slot
(``observe_all``, a scan), and runs the clock to the next step, waking the core whenever
it asks. The decisions are the ``scaled`` log lines of the trace.

What must hold (specs/master.md, "Spare-worker scaling"):

- **bounds**: every target within ``min_workers``..``max_workers``, and never more live
  workers than ``max_workers``;
- **growth rate**: two growth steps are at least ``scale_interval`` apart, and each adds
  at most 32 workers (and at most 1 after no growth for an interval);
- **no oscillation**: while the load holds, the target goes up, then down, never down
  then up; the first shrink comes at least ``idle_timeout`` after the last growth, and
  shrinks are ``idle_timeout`` apart (an overshoot can only come from a saturated
  growth, while every worker was busy and the demand could not be seen);
- **settling**: at the end of a long steady phase the target is in the band (idle
  workers, target - min(B, target), at least ``min_spare`` unless at ``max_workers``,
  and at most ``max_spare`` unless at ``min_workers``) and the core asks for no wake-up
  for scaling. (A load beyond the workers shows only as all of them busy: with
  ``min_spare`` 0 a pool never grows by itself.)
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

from hypothesis import example, given, note
from hypothesis import strategies as st

from prefork.core import Log, MasterState, PoolConfig
from prefork.core.scaling import SPAWN_RATE_CAP
from prefork.testing import ProcState, SimOS

POOL = "default"


@dataclass(frozen=True)
class Scaled:
    """One decision of the rule, from its log line's fields."""

    at: float
    before: int
    after: int


@st.composite
def scaling_configs(draw: st.DrawFn) -> PoolConfig:
    least = draw(st.integers(0, 2))
    most = draw(st.integers(max(least, 1), 9))
    min_spare = draw(st.integers(0, 3))
    max_spare = draw(st.integers(min_spare, 4))
    return PoolConfig.of(
        workers=draw(st.integers(least, most)), min_workers=least, max_workers=most,
        min_spare=min_spare, max_spare=max_spare,
        idle_timeout=draw(st.sampled_from([0.5, 1.0, 3.0])),
        scale_interval=draw(st.sampled_from([0.25, 0.5, 1.0])),
        setup_timeout=None, graceful_timeout=draw(st.sampled_from([1.0, 30.0])),
    )


class LoadedPool:
    """A SimOS pool under a load of ``busy`` workers (see the module doc)."""

    def __init__(self, config: PoolConfig, setup_times: list[float]) -> None:
        self.sim = SimOS(config, pid_space=64)
        self.group = config.groups[0]
        self.setup_times = setup_times or [0.0]
        self.ready_at: dict[int, float] = {}  # pid -> when its setup finishes
        self.problems: list[str] = []
        self.sim.boot()

    def scan(self, busy: int) -> None:
        """One look by the adapter: setups, the load, reaps, readings."""
        sim = self.sim
        for pid in sim.pids(ProcState.SPAWNING):
            due = self.ready_at.setdefault(
                pid, sim.now + self.setup_times[pid % len(self.setup_times)])
            if sim.now >= due:
                sim.finish_setup(pid)
        for process in sim.workers():  # a worker told to stop finishes its perform
            if process.state is ProcState.PERFORMING and process.told_to_stop:
                sim.end_perform(process.pid)
        ready = [p for p in sim.active() if p.state in (ProcState.IDLE, ProcState.PERFORMING)]
        performing = [p for p in ready if p.state is ProcState.PERFORMING]
        idle = [p for p in ready if p.state is ProcState.IDLE]
        want = min(busy, len(ready))
        for process in performing[want:]:
            sim.end_perform(process.pid)
        for process in idle[:max(0, want - len(performing))]:
            sim.start_perform(process.pid)
        for pid in sim.zombies():
            self.ready_at.pop(pid, None)
            sim.reap(pid, observe=False)
        sim.observe_all()
        live = len(sim.active())
        if self.group.max_workers is not None and live > self.group.max_workers:
            self.problems.append(f"t={sim.now:g}: {live} live workers > max_workers")

    def hold(self, busy: int, seconds: float, step: float) -> None:
        """The load stays at ``busy`` for ``seconds``, scanned every ``step``."""
        end = self.sim.now + seconds
        while self.sim.now < end:
            self.scan(busy)
            self.sim.run_until(min(end, self.sim.now + step))

    def decisions(self, since: int = 0) -> list[Scaled]:
        found = []
        for step in self.sim.steps_since(since):
            for effect in step.effects:
                fields = dict(effect.fields) if isinstance(effect, Log) else {}
                if fields.get("event") == "rescaled" and fields.get("pool") == POOL:
                    found.append(Scaled(step.now, fields["from"], fields["to"]))
        return found


def check_bounds_and_rate(pool: LoadedPool, decisions: list[Scaled]) -> None:
    group = pool.group
    for decision in decisions:
        assert group.min_workers <= decision.after <= group.max_workers, decision
    growth = [d for d in decisions if d.after > d.before]
    for earlier, later in pairwise(growth):
        assert later.at >= earlier.at + group.scale_interval, (earlier, later)
    for decision in growth:
        assert decision.after - decision.before <= SPAWN_RATE_CAP, decision
    assert not pool.problems, pool.problems


def check_no_oscillation(pool: LoadedPool, decisions: list[Scaled]) -> None:
    """Within one steady phase: up, then down, never down then up; the first down at
    least idle_timeout after the last up; downs idle_timeout apart."""
    idle_timeout = pool.group.idle_timeout
    directions = ["up" if d.after > d.before else "down" for d in decisions]
    assert "up" not in directions[directions.index("down"):] if "down" in directions \
        else True, f"the target went down then up under a steady load: {decisions}"
    ups = [d for d in decisions if d.after > d.before]
    downs = [d for d in decisions if d.after < d.before]
    if ups and downs:
        assert downs[0].at >= ups[-1].at + idle_timeout, (ups[-1], downs[0])
    for earlier, later in pairwise(downs):
        assert later.at >= earlier.at + idle_timeout, (earlier, later)


def check_settled(pool: LoadedPool, busy: int) -> None:
    group, sup = pool.group, pool.sim.supervisor
    target = sup.targets[POOL]
    seen_busy = min(busy, target)  # a load beyond the workers shows as all of them busy
    idle = target - seen_busy
    assert target == group.max_workers or idle >= (group.min_spare or 0), (
        f"target {target} under a load of {busy} is short of min_spare {group.min_spare}")
    assert target == group.min_workers or idle <= group.max_spare, (
        f"target {target} under a load of {busy} keeps {idle} idle > max_spare")
    assert sup.master.scaling.wake_at() is None, "a settled pool still asks to be woken"


@given(config=scaling_configs(), busy=st.integers(0, 12),
       setup_times=st.lists(st.sampled_from([0.0, 0.1, 0.5, 2.0]), min_size=1, max_size=4),
       step=st.sampled_from([0.1, 0.25, 0.5]))
@example(config=PoolConfig.of(workers=1, min_workers=0, max_workers=9, min_spare=3,
                              max_spare=3, idle_timeout=0.5, scale_interval=0.25,
                              setup_timeout=None),
         busy=12, setup_times=[2.0], step=0.1)
def test_a_steady_load_never_oscillates_and_settles_in_the_band(
        config: PoolConfig, busy: int, setup_times: list[float], step: float) -> None:
    pool = LoadedPool(config, setup_times)
    group = pool.group
    settle = group.idle_timeout * 2 + group.scale_interval * 12 + max(setup_times) * 4 + 2
    pool.hold(busy, settle, step)
    decisions = pool.decisions()
    note(f"decisions: {decisions}\n" + pool.sim.format_trace(last=10))
    check_bounds_and_rate(pool, decisions)
    check_no_oscillation(pool, decisions)
    check_settled(pool, busy)
    assert pool.sim.state is MasterState.RUNNING


@given(config=scaling_configs(),
       phases=st.lists(st.tuples(st.integers(0, 12), st.sampled_from([0.5, 2.0, 8.0])),
                       min_size=1, max_size=5),
       setup_times=st.lists(st.sampled_from([0.0, 0.1, 0.5]), min_size=1, max_size=3),
       step=st.sampled_from([0.1, 0.25, 0.5]))
@example(config=PoolConfig.of(workers=1, max_workers=3, min_spare=1, max_spare=1,
                              idle_timeout=0.5, scale_interval=1.0, setup_timeout=None,
                              graceful_timeout=1.0),
         phases=[(2, 2.0)], setup_times=[0.5], step=0.05)  # growth steps exactly 1s apart
def test_a_changing_load_keeps_the_pool_within_bounds_and_never_oscillates_in_a_phase(
        config: PoolConfig, phases: list[tuple[int, float]], setup_times: list[float],
        step: float) -> None:
    pool = LoadedPool(config, setup_times)
    every: list[Scaled] = []
    for busy, seconds in phases:
        mark = pool.sim.mark()
        pool.hold(busy, seconds, step)
        decisions = pool.decisions(mark)
        note(f"load {busy} for {seconds}s: {decisions}")
        check_no_oscillation(pool, decisions)
        every += decisions
    check_bounds_and_rate(pool, every)
