"""The restart policy alone: back-off arithmetic per group and slot, the intensity window,
and which classes of end are failures."""

from __future__ import annotations

import pytest

from prefork.core import GroupConfig, Outcome, PoolConfig, backoff_delay
from prefork.core.restarts import FAILURES, RestartIntensity, RestartPolicy, _seconds

FAST = GroupConfig("fast", 1, restart_backoff=1, restart_backoff_max=4)
SLOW = GroupConfig("slow", 1, restart_backoff=10, restart_backoff_max=100)


def test_backoff_doubles_from_the_second_failure_and_stops_at_the_cap() -> None:
    assert [backoff_delay(n, FAST) for n in range(1, 7)] == [0, 1, 2, 4, 4, 4]
    assert backoff_delay(10_000, FAST) == 4  # no float overflow on a long crash loop


def test_failures_and_retirements_are_told_apart_by_class() -> None:
    assert {Outcome.RETIRED, Outcome.EXITED}.isdisjoint(FAILURES)
    assert set(Outcome) - {Outcome.RETIRED, Outcome.EXITED} == FAILURES


def test_each_group_backs_off_with_its_own_options() -> None:
    policy = RestartPolicy(PoolConfig.of(groups={"fast": 1, "slow": 1}))
    for now in (1.0, 2.0):
        policy.failed(Outcome.CRASHED, FAST, 0, now, uptime=0.0)
        lines = policy.failed(Outcome.CRASHED, SLOW, 0, now, uptime=0.0)
    assert policy.respawn_at("fast", 0) == 3.0 and policy.respawn_at("slow", 0) == 12.0
    assert [line.message for line in lines] == [
        "pool slow: 2 crashes in 60s, next start in 10s (slot slow.0 failed 2 times in a row)"]
    assert policy.respawn_at("fast", 1) == 0.0  # another slot has its own run


def test_a_worker_that_performed_or_lived_long_ends_the_run() -> None:
    policy = RestartPolicy(PoolConfig())
    for _ in range(3):
        policy.failed(Outcome.KILLED, FAST, 0, 1.0, uptime=0.0)
    policy.worked("fast", 0)
    assert policy.history("fast", 0) is None
    for _ in range(3):
        policy.failed(Outcome.CRASHED, FAST, 0, 1.0, uptime=0.0)
    assert policy.failed(Outcome.CRASHED, FAST, 0, 9.0, uptime=4.0) == []  # up 4s: a new run
    assert policy.history("fast", 0).failures == 1


def test_a_worker_never_ready_never_lived_long_enough() -> None:
    policy = RestartPolicy(PoolConfig())
    policy.failed(Outcome.SETUP_FAILED, FAST, 0, 100.0, uptime=None)
    lines = policy.failed(Outcome.SETUP_FAILED, FAST, 0, 200.0, uptime=None)
    assert [line.message for line in lines] == [
        "pool fast: next start in 1s (slot fast.0 failed 2 times in a row)"]
    policy.failed(Outcome.CRASHED, FAST, 0, 300.0, uptime=4.0)
    assert policy.history("fast", 0).failures == 1  # ready for 4s, the cap: a new run


def test_the_intensity_counts_failures_inside_the_period_only() -> None:
    intensity = RestartIntensity(max_restarts=1, period=10)
    intensity.record(0.0)
    intensity.record(5.0)
    assert intensity.exceeded(9.0)
    assert not intensity.exceeded(10.0)  # the failure at 0 is exactly one period old
    assert intensity.times == [5.0]
    assert not RestartIntensity(None, 10).exceeded(1e9)


def test_a_reload_forgets_dropped_groups_and_takes_the_new_limit() -> None:
    policy = RestartPolicy(PoolConfig.of(groups={"fast": 1, "slow": 1}))
    policy.failed(Outcome.SETUP_FAILED, FAST, 0, 1.0, uptime=0.0)
    policy.failed(Outcome.TIMED_OUT, SLOW, 0, 1.0, uptime=0.0)
    policy.reconfigure(PoolConfig.of(groups={"fast": 1}, max_restarts=1, restart_period=5))
    assert list(policy.groups) == ["fast"] and list(policy.intensities) == ["fast"]
    fast = policy.intensities["fast"]
    assert (fast.max_restarts, fast.period) == (1, 5)
    policy.failed(Outcome.CRASHED, FAST, 0, 2.0, uptime=0.0)
    assert policy.exhausted(2.0)  # the failure at t=1 is kept
    assert policy.exhausted_group(2.0) == "fast"


def test_each_group_has_its_own_intensity() -> None:
    config = PoolConfig.of(groups={"fast": {"workers": 1, "max_restarts": 1},
                                   "slow": {"workers": 1, "max_restarts": 5}})
    fast, slow = config.groups
    policy = RestartPolicy(config)
    for now in (1.0, 2.0, 3.0):
        policy.failed(Outcome.CRASHED, slow, 0, now, uptime=0.0)
    assert not policy.exhausted(3.0)  # slow allows 5; fast saw none
    policy.failed(Outcome.CRASHED, fast, 0, 4.0, uptime=0.0)
    policy.failed(Outcome.CRASHED, fast, 0, 5.0, uptime=0.0)
    assert policy.exhausted_group(5.0) == "fast"


def test_a_dropped_groups_failures_count_toward_no_intensity() -> None:
    policy = RestartPolicy(PoolConfig.of(groups={"fast": 1}, max_restarts=0))
    policy.failed(Outcome.CRASHED, SLOW, 0, 1.0, uptime=0.0)
    assert not policy.exhausted(1.0) and policy.counted == {Outcome.CRASHED: 1}


def test_the_crash_loop_in_a_line() -> None:
    policy = RestartPolicy(PoolConfig.of(groups={"fast": 1}, restart_period=10))
    assert policy.crash_loop("fast", 0.0) is None
    policy.failed(Outcome.CRASHED, FAST, 0, 1.0, uptime=0.0)
    assert policy.crash_loop("fast", 1.0) == "pool fast: 1 crash in 10s"
    policy.failed(Outcome.CRASHED, FAST, 0, 2.0, uptime=0.0)
    policy.failed(Outcome.CRASHED, FAST, 0, 3.0, uptime=0.0)  # respawn at 5
    assert policy.crash_loop("fast", 3.0) == "pool fast: 3 crashes in 10s, next start in 2s"
    assert policy.crash_loop("fast", 6.0) == "pool fast: 3 crashes in 10s"
    assert policy.crash_loop("fast", 12.5) == "pool fast: 1 crash in 10s"
    assert policy.crash_loop("fast", 14.0) is None
    assert policy.crash_loop("absent", 14.0) is None


def test_a_retirement_is_not_counted() -> None:
    policy = RestartPolicy(PoolConfig())
    with pytest.raises(AssertionError):
        policy.failed(Outcome.RETIRED, FAST, 0, 1.0, uptime=0.0)


def test_a_failed_perform_counts_toward_intensity_only() -> None:
    policy = RestartPolicy(PoolConfig.of(groups={"fast": 1}, max_restarts=2))
    assert policy.failed(Outcome.PERFORM_FAILED, FAST, 0, 1.0, uptime=0.0, count=2) == []
    assert policy.history("fast", 0) is None  # the slot has nothing to wait for
    assert policy.respawn_at("fast", 0) == 0.0
    assert policy.intensities["fast"].times == [1.0, 1.0] and not policy.exhausted(1.0)
    policy.failed(Outcome.PERFORM_FAILED, FAST, 0, 2.0, uptime=0.0)
    assert policy.exhausted(2.0)
    assert policy.counted == {Outcome.PERFORM_FAILED: 3}


def test_every_failure_is_tallied_by_class() -> None:
    policy = RestartPolicy(PoolConfig())
    policy.failed(Outcome.CRASHED, FAST, 0, 1.0, uptime=0.0)
    policy.failed(Outcome.TIMED_OUT, FAST, 1, 1.0, uptime=0.0)
    policy.failed(Outcome.CRASHED, FAST, 0, 2.0, uptime=0.0)
    assert policy.counted == {Outcome.CRASHED: 2, Outcome.TIMED_OUT: 1}
    assert policy.history("fast", 0).failures == 2


@pytest.mark.parametrize(("delay", "words"), [(4, "4"), (0.05, "0.05"), (2.05295, "2.05"),
                                               (12.345, "12.3"), (1234.5, "1234")])
def test_a_wait_is_told_in_three_digits_and_whole_seconds_from_100(delay: float,
                                                                    words: str) -> None:
    assert _seconds(delay) == words
