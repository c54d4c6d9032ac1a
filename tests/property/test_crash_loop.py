"""INV-6, focused: a job whose setup always fails is forked no faster than the back-off.

Every worker of the pool fails its setup ``fail_after`` seconds after it is forked, and
the test wakes the core exactly when it asks (``WakeAt``) and reaps every child at once:
the fastest world the core can meet. The number of forks of each slot over a window must
stay within what the documented policy allows (first crash replaced at once, then
``restart_backoff``, doubling, capped at ``restart_backoff_max``), and the master must
say why it waits. With ``max_restarts`` set it must give up at the first crash that makes
more than ``max_restarts`` within ``restart_period``, stop forking, and exit 1.
"""

from __future__ import annotations

from collections import Counter

from hypothesis import example, given, note
from hypothesis import strategies as st
from pool_model import expected_backoff

from prefork.core import (
    ChildExited,
    Exit,
    Kill,
    Log,
    MasterState,
    PoolConfig,
    Sig,
    Spawn,
)
from prefork.testing import ProcState, SimOS

M = MasterState


def policy_forks(until: float, fail_after: float, config: PoolConfig) -> int:
    """Forks of one slot in ``[0, until]`` when the policy is followed to the letter.

    The slot is forked at 0; each worker fails its setup ``fail_after`` seconds after its
    fork, so it was never ready and never ran long enough, however long it set up: every
    failure extends the slot's streak, and the slot is forked again after the streak's
    delay. Times are dyadic fractions, so this float arithmetic is exact.
    """
    t, streak, forks = 0.0, 0, 0
    while t <= until:
        forks += 1
        failed = t + fail_after
        if failed > until:
            break
        streak += 1
        t = failed + expected_backoff(streak, config)
    return forks


def short_enough(until: float, fail_after: float, config: PoolConfig) -> float:
    """``until``, halved until the policy allows at most 200 forks per slot (keeps it fast)."""
    while policy_forks(until, fail_after, config) > 200:
        until /= 2
    return until


def drive(sim: SimOS, until: float, fail_after: float, *, hang: bool, cap: int) -> None:
    """Run the pool to ``until``: setups fail (crash, or hang until the setup timeout),
    every zombie is reaped at once, the core is ticked exactly when it asks. Stop early
    once more than ``cap`` forks were asked for (the test fails then anyway)."""
    spawns = [0]
    sim.listeners.append(
        lambda step: spawns.__setitem__(0, spawns[0] + sum(isinstance(e, Spawn)
                                                           for e in step.effects)))
    for _ in range(100_000):
        if sim.state is M.STOPPED or spawns[0] > cap:
            return
        setting_up = [p for p in sim.workers() if p.state is ProcState.SPAWNING]
        due = [p for p in setting_up if not hang and p.forked_at + fail_after <= sim.now]
        for process in due:
            sim.crash(process.pid, 1)
        if sim.zombies(stray=False):
            sim.reap_all()
            continue
        moments = [] if hang else [p.forked_at + fail_after for p in setting_up]
        if sim.wake_at is not None:
            moments.append(sim.wake_at)
        if not moments or min(moments) > until:
            return
        sim.advance_to(min(moments))
        sim.tick()
    raise AssertionError("the crash loop never settled: " + sim.format_trace(last=20))


dyadic_backoff = st.sampled_from([0.125, 0.25, 0.5, 1.0])
fail_after = st.sampled_from([0.0, 0.125, 0.5, 1.0, 2.0, 40.0])


@given(workers=st.integers(1, 3), backoff=dyadic_backoff,
       cap_factor=st.sampled_from([1, 2, 8, 64, 256]), fail_after=fail_after,
       until=st.sampled_from([1.0, 10.0, 60.0, 300.0]))
def test_a_setup_that_always_crashes_is_forked_at_the_backoff_rate(
        workers: int, backoff: float, cap_factor: int, fail_after: float, until: float) -> None:
    config = PoolConfig.of(workers=workers, restart_backoff=backoff,
                           restart_backoff_max=backoff * cap_factor, setup_timeout=None)
    note(f"config: {config}")
    until = short_enough(until, fail_after, config)
    bound = policy_forks(until, fail_after, config)
    sim = SimOS(config, pid_space=64)
    sim.boot()
    drive(sim, until, fail_after, hang=False, cap=workers * bound + 10)
    forks = Counter(spawn.slot for spawn in sim.effects_since(0, Spawn))
    note(f"bound per slot {bound}, forks {dict(forks)}\n" + sim.format_trace(last=12))
    for slot in range(workers):
        assert forks[slot] <= bound, f"slot {slot}: {forks[slot]} forks, the policy allows {bound}"
        assert forks[slot] >= bound - 1, f"slot {slot} forked only {forks[slot]} of {bound}"
    crashes = sum(isinstance(step.event, ChildExited) for step in sim.trace)
    if crashes > workers:
        # some slot failed its setup twice in a row: it had to wait, and the master says so
        assert any(isinstance(e, Log) and e.level in ("warning", "error") and "next start in" in
                   e.message for e in sim.effects_since(0, Log))
    assert sim.state is M.RUNNING


# 13 forks in 10s where the policy allows 9, until 1c4c3ad counted a timeout as a crash
# when the ABRT is sent rather than when the worker is reaped (so the replacement that is
# forked at the ABRT was not backed off)
@example(workers=1, backoff=0.125, cap_factor=8, setup_timeout=0.5, until=10.0)
# a hung setup with setup_timeout >= restart_backoff_max was replaced at once, for ever,
# until a worker's time up counted from its first ready reading (not from its fork)
@example(workers=1, backoff=0.125, cap_factor=1, setup_timeout=4.0, until=60.0)
@given(workers=st.integers(1, 3), backoff=dyadic_backoff,
       cap_factor=st.sampled_from([1, 8, 64]), setup_timeout=st.sampled_from([0.5, 1.0, 4.0]),
       until=st.sampled_from([10.0, 60.0, 300.0]))
def test_a_setup_that_always_times_out_is_forked_at_the_backoff_rate(
        workers: int, backoff: float, cap_factor: int, setup_timeout: float,
        until: float) -> None:
    """A setup that never finishes is stopped at ``setup_timeout`` (ABRT): a failure too."""
    config = PoolConfig.of(workers=workers, restart_backoff=backoff,
                           restart_backoff_max=backoff * cap_factor,
                           setup_timeout=setup_timeout, kill_timeout=1.0)
    note(f"config: {config}")
    until = short_enough(until, setup_timeout, config)
    bound = policy_forks(until, setup_timeout, config)
    sim = SimOS(config, pid_space=64)
    sim.boot()
    drive(sim, until, setup_timeout, hang=True, cap=workers * bound + 10)
    forks = Counter(spawn.slot for spawn in sim.effects_since(0, Spawn))
    note(f"bound per slot {bound}, forks {dict(forks)}\n" + sim.format_trace(last=12))
    for slot in range(workers):
        assert forks[slot] <= bound, f"slot {slot}: {forks[slot]} forks, the policy allows {bound}"


@given(workers=st.integers(1, 3), max_restarts=st.integers(0, 5),
       period=st.sampled_from([1.0, 10.0, 60.0]), backoff=dyadic_backoff,
       cap_factor=st.sampled_from([1, 4, 64]), fail_after=fail_after)
def test_too_many_crashes_in_the_period_make_the_master_give_up(
        workers: int, max_restarts: int, period: float, backoff: float, cap_factor: int,
        fail_after: float) -> None:
    config = PoolConfig.of(workers=workers, restart_backoff=backoff,
                           restart_backoff_max=backoff * cap_factor, setup_timeout=None,
                           max_restarts=max_restarts, restart_period=period)
    note(f"config: {config}")
    until = short_enough(600.0, fail_after, config)
    sim = SimOS(config, pid_space=64)
    sim.boot()
    drive(sim, until, fail_after, hang=False, cap=10_000)
    # replay the crashes: the master must give up at the first one that makes too many
    crash_times: list[float] = []
    gave_up_at = None
    for step in sim.trace:
        if isinstance(step.event, ChildExited) and step.process is not None \
                and not step.process.told_to_stop:
            crash_times.append(step.now)
            recent = [t for t in crash_times if t > step.now - period]
            if len(recent) > max_restarts and gave_up_at is None:
                gave_up_at = step.index
                assert step.after is M.TERMINATING or step.after is M.STOPPED, (
                    f"{len(recent)} crashes in {period:g}s, and the master is {step.after}")
                assert any(isinstance(e, Log) and e.level == "error" and "giving up" in
                           e.message for e in step.effects)
        if gave_up_at is not None and step.index > gave_up_at:
            assert not any(isinstance(e, Spawn) for e in step.effects), "forked after giving up"
    note(sim.format_trace(last=15))
    if gave_up_at is None:
        assert sim.state is M.RUNNING
        return
    # the master TERMs what is left; once every child is reaped it exits 1
    for process in sim.processes:
        if process.alive:
            assert Sig.TERM in process.signals
    assert sim.state is M.STOPPED, sim.state
    assert sim.effects_since(0, Exit) == [Exit(1)]
    assert not [k for k in sim.effects_since(0, Kill) if k.signo is Sig.KILL]


def test_a_crash_loop_outlives_a_thousand_failures_in_a_row() -> None:
    """Found by test_a_setup_that_always_crashes...: backoff_delay computed
    ``restart_backoff * 2 ** (failures - 2)`` before capping it, and the int overflowed a
    float at the 1027th failure in a row (about 8.5 hours of a setup that always fails,
    with the defaults): OverflowError killed the master. Fixed in 1c4c3ad."""
    sim = SimOS(PoolConfig.of(workers=1, setup_timeout=None))  # default back-off
    sim.boot()
    for _ in range(1100):
        (pid,) = sim.pids()
        sim.crash(pid)  # at once: an uptime of 0 never ends the streak
        sim.reap(pid)
        if not sim.pids():
            assert sim.wake_at is not None
            sim.advance_to(sim.wake_at)
            sim.tick()
    assert sim.state is M.RUNNING
    assert sim.now > 8 * 3600


@given(mail_workers=st.integers(1, 2), max_restarts=st.integers(0, 4),
       period=st.sampled_from([1.0, 10.0, 60.0]), backoff=dyadic_backoff,
       fail_after=st.sampled_from([0.0, 0.125, 0.5, 2.0]), web_workers=st.integers(1, 2))
def test_each_pool_is_judged_by_its_own_intensity_and_its_crash_loop_is_told(
        mail_workers: int, max_restarts: int, period: float, backoff: float,
        fail_after: float, web_workers: int) -> None:
    """Two pools: mail's setups always fail, web's succeed (web allows no crash at all).
    The master gives up at the first crash of mail that makes more than mail's own
    ``max_restarts`` within its ``restart_period``, naming mail; every back-off line
    counts mail's crashes in that window, and never web's."""
    config = PoolConfig.of(
        groups={"mail": {"workers": mail_workers, "max_restarts": max_restarts,
                         "restart_period": period},
                "web": {"workers": web_workers, "max_restarts": 0}},
        restart_backoff=backoff, restart_backoff_max=backoff * 4, setup_timeout=None)
    sim = SimOS(config, pid_space=64)
    sim.boot()
    crash_times: list[float] = []
    for _ in range(2000):
        if sim.state is not M.RUNNING or len(crash_times) > 30:
            break  # (30 crashes: past any limit drawn, or a period the back-off outlasts)
        for process in sim.workers():
            if process.state is ProcState.SPAWNING and process.group == "web":
                sim.finish_setup(process.pid)
                sim.observe(process.pid)
            elif process.state is ProcState.SPAWNING and \
                    process.forked_at + fail_after <= sim.now:
                sim.crash(process.pid, 1)
        for pid in sim.zombies(stray=False):
            mark = sim.mark()
            if sim.state is M.STOPPED:
                break
            told = sim.process(pid).told_to_stop
            sim.reap(pid)
            if told:
                continue
            crash_times.append(sim.now)
            recent = len([t for t in crash_times if t > sim.now - period])
            lines = [e.message for e in sim.effects_since(mark, Log)]
            for line in lines:
                if "next start in" in line:
                    assert line.startswith(f"pool mail: {recent} crash"), (line, recent)
            if recent > max_restarts:
                assert sim.state in (M.TERMINATING, M.STOPPED), (recent, sim.state)
                assert any(line.startswith(f"pool mail: more than {max_restarts} crashes in "
                                           f"{period:g}s: giving up") for line in lines)
                break
            assert sim.state is M.RUNNING
        moments = [p.forked_at + fail_after for p in sim.workers()
                   if p.state is ProcState.SPAWNING and p.group == "mail"]
        if sim.wake_at is not None:
            moments.append(sim.wake_at)
        if not moments:
            break
        sim.advance_to(max(sim.now, min(moments)))
        sim.tick()
    note(sim.format_trace(last=12))
    assert not any("pool web" in e.message for e in sim.effects_since(0, Log)
                   if e.level in ("warning", "error"))
