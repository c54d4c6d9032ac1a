"""The spare-worker scaling rule alone: growth by doubling steps, shrinking after
idle_timeout, the bounds, and the wake-ups it asks for."""

from __future__ import annotations

from prefork.core import (
    Boot,
    Forked,
    GroupConfig,
    Log,
    Observed,
    PoolConfig,
    Spawn,
    Supervisor,
    WorkerState,
)
from prefork.core.events import Reload
from prefork.core.scaling import (
    SPAWN_RATE_CAP,
    Decision,
    Memory,
    review,
    scales,
    target_after_reload,
)
from prefork.testing import SimOS

POOL = GroupConfig("mail", 2, min_workers=1, max_workers=10, min_spare=1, max_spare=2,
                   idle_timeout=5, scale_interval=1)


def test_only_a_pool_with_spares_set_scales() -> None:
    assert not scales(GroupConfig("fixed", 4, max_workers=8))
    assert scales(POOL)
    assert scales(GroupConfig("shrinks", 4, max_spare=1))


def test_a_pool_in_its_band_is_settled_and_asks_for_no_wake_up() -> None:
    memory = Memory()
    decision = review(POOL, memory, target=3, busy=1, idle=2, now=0.0)
    assert decision.target == 3 and decision.why is None
    assert memory.wake_at is None


def test_a_saturated_pool_grows_by_a_rate_that_doubles_per_interval() -> None:
    """Every worker busy: the demand may be any larger than the pool, so each step adds
    the whole rate (not just the one spare short), up to max_workers."""
    memory, target, steps = Memory(), 1, []
    for now in (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0):
        decision = review(POOL, memory, target, busy=target, idle=0, now=now)
        steps.append(decision.target - target)
        target = decision.target
    # 1 at once; nothing before the interval; 2, 4, then what is left below 10
    assert steps == [1, 0, 2, 0, 4, 2, 0]
    assert target == 10 and memory.wake_at is None


def test_an_unsaturated_pool_grows_by_the_shortage_at_most() -> None:
    """Some worker idle: the demand is known, and a step adds no more than is short."""
    memory = Memory()
    wide = GroupConfig("web", 6, max_workers=100, min_spare=3, max_spare=3)
    decision = review(wide, memory, target=6, busy=4, idle=2, now=0.0)  # 1 short
    assert decision.target == 7 and memory.wake_at is None


def test_a_growth_step_is_the_rate_or_the_shortage_whichever_is_smaller() -> None:
    wide = GroupConfig("web", 1, max_workers=100, min_spare=20, max_spare=20)
    memory, target, steps = Memory(), 1, []
    for second in range(8):
        decision = review(wide, memory, target, busy=1, idle=0, now=float(second))
        steps.append(decision.target - target)
        target = decision.target
        if decision.target < 21:
            assert memory.wake_at == second + 1.0  # the next step is due in an interval
    assert steps == [1, 2, 4, 8, 5, 0, 0, 0]  # 1, 2, 4, 8, then what is left of 20
    assert memory.wake_at is None  # no shortage: settled


def test_the_rate_is_capped() -> None:
    huge = GroupConfig("huge", 0, max_workers=1000, min_spare=500)
    memory, target = Memory(), 0
    for second in range(10):
        decision = review(huge, memory, target, target, 0, float(second))
        assert decision.target - target <= SPAWN_RATE_CAP
        target = decision.target
    assert memory.rate == SPAWN_RATE_CAP


def test_growth_stops_at_max_workers_and_waits_for_nothing() -> None:
    memory = Memory()
    decision = review(POOL, memory, target=10, busy=10, idle=0, now=0.0)
    assert decision.target == 10 and memory.wake_at is None


def test_a_surplus_is_stopped_once_it_has_lasted_idle_timeout() -> None:
    memory = Memory()
    assert review(POOL, memory, 6, busy=0, idle=6, now=0.0).target == 6
    assert memory.wake_at == 5.0
    assert review(POOL, memory, 6, busy=1, idle=5, now=2.0).target == 6  # surplus 3 now
    assert memory.wake_at == 5.0  # the surplus began at 0 all the same
    decision = review(POOL, memory, 6, busy=0, idle=6, now=5.0)
    assert decision.target == 3  # the surplus that lasted: 3, not the 4 of the moment
    assert decision.why == "3 idle beyond max_spare 2 for 5s"
    # a new surplus must last a whole idle_timeout again
    assert review(POOL, memory, 3, busy=0, idle=3, now=5.0).target == 3
    assert memory.wake_at == 10.0


def test_a_surplus_that_ends_is_forgotten() -> None:
    memory = Memory()
    review(POOL, memory, 6, busy=0, idle=6, now=0.0)
    review(POOL, memory, 6, busy=4, idle=2, now=3.0)  # busy again: no surplus
    assert memory.wake_at is None and memory.surplus_since is None
    assert review(POOL, memory, 6, busy=0, idle=6, now=5.0).target == 6
    assert memory.wake_at == 10.0


def test_shrinking_never_goes_below_min_workers() -> None:
    memory = Memory()
    review(POOL, memory, 3, busy=0, idle=3, now=0.0)
    assert review(POOL, memory, 3, busy=0, idle=3, now=5.0).target == 2  # spare 2 kept
    lone = GroupConfig("lone", 1, min_workers=1, max_spare=0)
    memory = Memory()
    assert review(lone, memory, 1, busy=0, idle=1, now=0.0).target == 1
    assert memory.wake_at is None  # at min_workers there is no surplus to wait for


def test_workers_in_their_setup_are_spare_but_not_surplus() -> None:
    memory = Memory()
    # 4 spawning, 2 busy: spare 4 (no growth), idle 0 (no surplus)
    assert review(POOL, memory, 6, busy=2, idle=0, now=0.0).target == 6
    assert memory.wake_at is None


def test_the_readings_of_one_scan_count_as_one_moment() -> None:
    """A scan hands the readings over one by one at one time: the surplus of that moment
    is what the last of them says, not the smallest on the way."""
    memory = Memory()
    for idle in (3, 4, 5, 6):  # four workers read idle, one after another, at t=0
        review(POOL, memory, 6, busy=0, idle=idle, now=0.0)
    assert review(POOL, memory, 6, busy=0, idle=6, now=5.0).target == 2


def test_the_rate_doubles_across_the_moments_a_step_seems_enough() -> None:
    """The workers a step forks count as spare while they set up: the shortage seems
    over until they are busy too. The rate goes on doubling all the same, and only a
    whole interval without a step makes it 1 again."""
    memory, target = Memory(), 1
    for now in (0.0, 1.0, 2.0):
        target = review(POOL, memory, target, busy=target, idle=0, now=now).target
        assert review(POOL, memory, target, busy=target - 1, idle=0, now=now + 0.5) \
            == Decision(target)  # the new workers set up: spare 1, no shortage
    assert target == 8  # 1 + 1 + 2 + 4
    assert review(POOL, memory, 8, busy=8, idle=0, now=4.0).target == 9  # a new shortage


def test_a_reload_keeps_a_scaling_pools_target_within_its_new_bounds() -> None:
    assert target_after_reload(POOL, 7) == 7
    assert target_after_reload(POOL, 12) == 10  # the new max_workers
    assert target_after_reload(POOL, 0) == 1  # the new min_workers
    assert target_after_reload(POOL, None) == 2  # a new pool: its workers
    assert target_after_reload(GroupConfig("fixed", 3), 7) == 3  # not scaling: workers


def test_the_rate_goes_back_to_1_after_two_intervals_without_a_step() -> None:
    """Measured in intervals, not seconds: with 2 s intervals a step 2.5 s after the last
    one still doubles; one 4 s after starts again at 1."""
    slow = GroupConfig("slow", 1, max_workers=100, min_spare=50, scale_interval=2)
    memory = Memory()
    assert review(slow, memory, 1, busy=1, idle=0, now=0.0).target == 2
    assert review(slow, memory, 2, busy=2, idle=0, now=2.5).target == 4  # the rate doubled
    assert review(slow, memory, 4, busy=4, idle=0, now=7.0).target == 5  # 2 intervals idle


def test_a_shortage_ends_a_surplus_and_the_next_waits_a_whole_idle_timeout() -> None:
    memory = Memory()
    review(POOL, memory, 6, busy=0, idle=6, now=0.0)  # a surplus begins
    assert review(POOL, memory, 6, busy=6, idle=0, now=2.0).target == 7  # short of spares
    assert memory.surplus_since is None
    assert review(POOL, memory, 7, busy=0, idle=7, now=3.0).target == 7
    assert memory.wake_at == 8.0


SCALING = {"mail": {"workers": 1, "max_workers": 4, "min_spare": 1, "max_spare": 2}}


def test_each_scaling_pool_is_reviewed_after_one_that_does_not_scale() -> None:
    """The review passes over a pool that does not scale and goes on to the next; its
    line says from what to what, and the readings it went by."""
    supervisor = Supervisor(PoolConfig.of(groups={"fixed": {"workers": 1}, **SCALING}))
    supervisor.handle(Boot(at=0.0))
    supervisor.handle(Forked("fixed", 0, 101, at=0.0))
    supervisor.handle(Forked("mail", 0, 102, at=0.0))
    supervisor.handle(Observed(101, WorkerState.IDLE, at=1.0))
    effects = supervisor.handle(Observed(102, WorkerState.PERFORMING, heartbeat_at=1.0,
                                         at=1.0))
    [line] = [e for e in effects if isinstance(e, Log) and dict(e.fields)["event"] == "rescaled"]
    assert line.message == "pool mail: 1 -> 2 workers (0 spare, min_spare 1)"
    assert dict(line.fields) == {"event": "rescaled", "pool": "mail", "from": 1, "to": 2,
                                 "busy": 1, "idle": 0}
    assert Spawn("mail", 1) in effects


def test_a_pool_that_stops_scaling_is_forgotten_and_the_review_rests() -> None:
    sim = SimOS(PoolConfig.of(groups={"fixed": {"workers": 1}, **SCALING}))
    sim.boot()
    for pid in sim.pids():
        sim.finish_setup(pid)
        sim.observe(pid)
    scaling = sim.supervisor.master.scaling
    assert list(scaling.memories) == ["mail"] and scaling.wanted()
    sim.command(Reload(PoolConfig.of(groups={"fixed": {"workers": 1}, "mail": {"workers": 1}})))
    sim.reap_all()
    assert scaling.memories == {} and not scaling.wanted()


def test_a_shrink_line_gives_the_readings_it_went_by() -> None:
    supervisor = Supervisor(PoolConfig.of(groups={"mail": {
        "workers": 4, "max_workers": 4, "max_spare": 1, "idle_timeout": 5}}))
    supervisor.handle(Boot(at=0.0))
    for slot in range(4):
        supervisor.handle(Forked("mail", slot, 101 + slot, at=0.0))
    for slot in range(4):
        supervisor.handle(Observed(101 + slot, WorkerState.IDLE, at=1.0))
    effects = supervisor.handle(Observed(101, WorkerState.IDLE, at=6.5))
    [line] = [e for e in effects if isinstance(e, Log) and dict(e.fields)["event"] == "rescaled"]
    assert dict(line.fields) == {"event": "rescaled", "pool": "mail", "from": 4, "to": 1,
                                 "busy": 0, "idle": 4}
