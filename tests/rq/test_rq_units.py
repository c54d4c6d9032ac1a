"""The parts of ``prefork.rq`` that need no Redis: names, URLs, and SIGALRM shared."""

from __future__ import annotations

import signal
import time

import pytest
from rq.timeouts import JobTimeoutException

from prefork.interrupts import PerformTimeout
from prefork.rq import (
    NestedAlarmDeathPenalty,
    RQJob,
    _safe_url,
    describe_exit,
    pool_job,
    queue_names,
    redis_url_for,
    worker_name,
)

pytestmark = pytest.mark.timeout(20)


def test_queues_come_from_the_pool_name_as_resque_pool_does() -> None:
    assert queue_names("high, default") == ["high", "default"]
    assert pool_job("high,default").queues == ["high", "default"]
    assert pool_job("mail", queues=["a", "b"]).queues == ["a", "b"]
    with pytest.raises(ValueError):
        queue_names(" , ")


def test_the_redis_url_of_a_pool_its_own_then_redis_url_then_the_files() -> None:
    env = {"REDIS_URL": "redis://env:1/0"}
    assert redis_url_for("redis://pool:1/0", "redis://top:1/0", env) == "redis://pool:1/0"
    assert redis_url_for(None, "redis://top:1/0", env) == "redis://env:1/0"
    assert redis_url_for(None, "redis://top:1/0", {}) == "redis://top:1/0"
    assert redis_url_for(None, None, {}) == "redis://localhost:6379/0"


def test_worker_names_are_found_from_a_pid() -> None:
    assert worker_name(42, host="web1") == "prefork.web1.42"
    assert worker_name(42, "mail", host="web1") == "mail.web1.42"
    assert _safe_url("redis://user:secret@h:1/0") == "redis://user:***@h:1/0"
    assert describe_exit(-9) == "was killed by signal 9 (SIGKILL)"
    assert describe_exit(1) == "exited with status 1"
    assert "secret" not in repr(RQJob("a", "redis://:secret@h:1/0"))


def on_soft_timeout(signo: int, frame: object) -> None:
    raise PerformTimeout("soft")


@pytest.fixture
def soft_timeout_handler():  # type: ignore[no-untyped-def]
    before = signal.signal(signal.SIGALRM, on_soft_timeout)
    yield
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, before)


def test_an_rq_job_timeout_inside_a_soft_timeout_raises_its_own_exception(
        soft_timeout_handler) -> None:
    signal.setitimer(signal.ITIMER_REAL, 5.0)  # prefork's soft_timeout around the perform
    with pytest.raises(JobTimeoutException), NestedAlarmDeathPenalty(0.2):
        time.sleep(3)
    assert signal.getsignal(signal.SIGALRM) is on_soft_timeout, "prefork's handler is back"
    left, _ = signal.getitimer(signal.ITIMER_REAL)
    assert 4.0 < left <= 4.85, "and the soft timer runs on with the time it had left"


def test_the_soft_timeout_fires_first_when_it_is_nearer(soft_timeout_handler) -> None:
    signal.setitimer(signal.ITIMER_REAL, 0.2)
    with pytest.raises(PerformTimeout), NestedAlarmDeathPenalty(5):
        time.sleep(3)
    assert signal.getsignal(signal.SIGALRM) is on_soft_timeout


def test_sigalrm_and_its_timer_are_left_as_they_were() -> None:
    # (pytest-timeout may have armed the timer itself: its handler is "the outer one")
    before = signal.getsignal(signal.SIGALRM)
    left_before = signal.getitimer(signal.ITIMER_REAL)[0]
    with NestedAlarmDeathPenalty(5):
        pass
    with NestedAlarmDeathPenalty(-1):  # RQ's "no timeout": nothing armed
        assert signal.getsignal(signal.SIGALRM) is before
    assert signal.getsignal(signal.SIGALRM) is before
    left = signal.getitimer(signal.ITIMER_REAL)[0]
    assert (left == 0) if left_before == 0 else (0 < left_before - left < 0.5)


def test_the_death_penalty_costs_microseconds() -> None:
    began = time.perf_counter()
    for _ in range(1000):
        with NestedAlarmDeathPenalty(180):
            pass
    per_job = (time.perf_counter() - began) / 1000
    assert per_job < 200e-6, f"{per_job * 1e6:.0f} µs per job"
