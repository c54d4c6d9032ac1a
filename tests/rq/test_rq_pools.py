"""RQ pools under prefork, against a real Redis server (issue 14, item 4).

Each case starts real masters (``rq_pool.py``) and enqueues real RQ jobs
(``rq_tasks``), which count their own runs in Redis (``runs``: job id -> times run), so
that "done exactly once", "lost" and "twice" are read, not guessed.
"""

from __future__ import annotations

import os
import signal
import time

import pytest
import redis
from conftest import wait_until
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry, StartedJobRegistry
from rq.worker import Worker

from rq import Queue, Retry

pytestmark = pytest.mark.timeout(60)


def enqueue(connection: redis.Redis, queue: str, count: int, func: str = "rq_tasks.record",
            kwargs: dict[str, object] | None = None, **options: object) -> list[str]:
    """``count`` jobs of ``func(tag=QUEUE-I, **kwargs)`` on ``queue``, in one pipeline."""
    q = Queue(queue, connection=connection)
    datas = [Queue.prepare_data(func, kwargs={"tag": f"{queue}-{i}", **(kwargs or {})},
                                **options) for i in range(count)]
    return [job.id for job in q.enqueue_many(datas)]


def runs(connection: redis.Redis) -> dict[str, int]:
    return {k.decode(): int(v) for k, v in connection.hgetall("runs").items()}


def rq_worker(connection: redis.Redis, pid: int) -> Worker:
    [worker] = [w for w in Worker.all(connection=connection) if w.name.endswith(f".{pid}")]
    return worker


def test_two_masters_drain_thousands_of_jobs_exactly_once(connection, redis_server,
                                                          start_pool) -> None:
    ids = enqueue(connection, "high", 1000) + enqueue(connection, "default", 2000)
    started = time.monotonic()
    one = start_pool(redis_server.url, "--queues", "high,default", "--workers", "2")
    two = start_pool(redis_server.url, "--queues", "high,default", "--workers", "2",
                     "--strategy", "forking")
    wait_until(lambda: connection.hlen("runs") >= len(ids), 40, "every job to run")
    elapsed = time.monotonic() - started
    one.signal(signal.SIGQUIT)
    two.signal(signal.SIGQUIT)
    assert one.wait() == 0 and two.wait() == 0
    done = runs(connection)
    twice = [i for i, n in done.items() if n != 1]
    lost = set(ids) - set(done)
    failed = FailedJobRegistry("high", connection=connection).count + FailedJobRegistry(
        "default", connection=connection).count
    statuses = {Job.fetch(i, connection=connection).get_status() for i in ids[::97]}
    print(f"two masters: enqueued {len(ids)}, done {len(done)}, failed {failed}, "
          f"lost {len(lost)}, twice {len(twice)}, in {elapsed:.1f}s")
    assert (len(done), failed, len(lost), len(twice)) == (len(ids), 0, 0, 0)
    assert statuses == {JobStatus.FINISHED}
    names = {w.name for w in Worker.all(connection=connection)}
    assert names == set(), f"every RQ worker record closed at the stop: {names}"
    assert connection.llen("rq:queue:high") == connection.llen("rq:queue:default") == 0
    for pool in (one, two):
        assert "Traceback" not in pool.log(), pool.log()[-3000:]


@pytest.mark.parametrize("strategy", ["simple", "forking"])
def test_quit_mid_run_loses_nothing(connection, redis_server, start_pool, strategy) -> None:
    ids = enqueue(connection, "default", 120, func="rq_tasks.nap", kwargs={"seconds": 0.02})
    pool = start_pool(redis_server.url, "--workers", "3", "--strategy", strategy)
    wait_until(lambda: connection.hlen("runs") >= 20, 20, "20 jobs done")
    pool.signal(signal.SIGQUIT)
    assert pool.wait() == 0
    done = runs(connection)
    queued = [i.decode() for i in connection.lrange("rq:queue:default", 0, -1)]
    assert all(n == 1 for n in done.values())
    assert sorted(list(done) + queued) == sorted(ids), "each job done once, or still queued"
    assert FailedJobRegistry("default", connection=connection).count == 0
    assert StartedJobRegistry("default", connection=connection).count == 0
    assert len(done) < len(ids), "the stop came mid-run"


@pytest.mark.parametrize("strategy", ["simple", "forking"])
def test_term_mid_job_requeues_the_interrupted_jobs_at_once(connection, redis_server,
                                                            start_pool, strategy) -> None:
    ids = enqueue(connection, "default", 4, func="rq_tasks.nap", kwargs={"seconds": 30})
    pool = start_pool(redis_server.url, "--workers", "2", "--strategy", strategy)
    wait_until(lambda: connection.hlen("running") == 2, 10, "two jobs running")
    pool.signal(signal.SIGTERM)
    assert pool.wait(10) == 0
    queued = [i.decode() for i in connection.lrange("rq:queue:default", 0, -1)]
    assert sorted(queued) == sorted(ids), "the two interrupted jobs are back, at the front"
    running = {k.decode() for k in connection.hkeys("running")}
    assert set(queued[:2]) == running
    for job_id in running:
        job = Job.fetch(job_id, connection=connection)
        assert job.get_status() == JobStatus.QUEUED
        assert "quick stop" in (job.latest_result().exc_string or "")
    assert StartedJobRegistry("default", connection=connection).count == 0
    assert Worker.all(connection=connection) == []


@pytest.mark.parametrize("victim", ["simple worker", "forking worker", "forking horse"])
def test_a_killed_worker_or_horse_has_its_job_failed_with_the_reason_within_a_second(
        connection, redis_server, start_pool, victim) -> None:
    [job_id] = enqueue(connection, "default", 1, func="rq_tasks.nap", kwargs={"seconds": 30})
    strategy = victim.split()[0]
    pool = start_pool(redis_server.url, "--workers", "1", "--strategy", strategy)
    [worker_pid] = pool.workers(1)
    horse = int(wait_until(lambda: connection.hget("running", job_id), 10, "the job to run"))
    assert (horse != worker_pid) == (strategy == "forking")
    target = horse if victim.endswith("horse") else worker_pid
    os.kill(target, signal.SIGKILL)
    killed_at = time.monotonic()
    registry = FailedJobRegistry("default", connection=connection)
    wait_until(lambda: job_id in registry.get_job_ids(), 1.0, "the job in the failed registry")
    took = time.monotonic() - killed_at
    job = Job.fetch(job_id, connection=connection)
    reason = job.latest_result().exc_string
    assert job.get_status() == JobStatus.FAILED
    assert "killed by signal 9" in reason, reason
    assert str(target) in reason
    assert StartedJobRegistry("default", connection=connection).count == 0
    print(f"{victim} KILLed: failed in {took * 1000:.0f} ms: {reason}")
    if victim.endswith("worker"):  # the master closes its RQ record right after the job
        wait_until(lambda: rq_worker_gone(connection, worker_pid), 1.0,
                   "the dead worker's RQ record to be closed")
    pool.signal(signal.SIGQUIT)
    assert pool.wait() == 0


def gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as file:
            return file.read().rpartition(")")[2].split()[0] == "Z"
    except OSError:
        return True


def rq_worker_gone(connection: redis.Redis, pid: int) -> bool:
    return not [w for w in Worker.all(connection=connection) if w.name.endswith(f".{pid}")]


def test_a_job_past_its_rq_timeout_is_failed_and_the_worker_goes_on(
        connection, redis_server, start_pool) -> None:
    q = Queue("default", connection=connection)
    slow = q.enqueue("rq_tasks.nap", 10, job_timeout=1)
    after = q.enqueue("rq_tasks.record", "after")
    pool = start_pool(redis_server.url, "--workers", "1", "--soft-timeout", "20")
    [worker_pid] = pool.workers(1)
    wait_until(lambda: connection.hget("runs", after.id), 8, "the next job to run")
    assert slow.get_status(refresh=True) == JobStatus.FAILED
    assert "JobTimeoutException" in slow.latest_result().exc_string
    assert pool.process.poll() is None and not rq_worker_gone(connection, worker_pid), \
        "SIGALRM left to prefork's soft_timeout: the worker lives on"
    pool.signal(signal.SIGQUIT)
    assert pool.wait() == 0


def test_a_job_hung_past_the_timeout_is_killed_horse_and_all_and_failed(
        connection, redis_server, start_pool) -> None:
    q = Queue("default", connection=connection)
    hung = q.enqueue("rq_tasks.hang_hard", job_timeout=1)
    pool = start_pool(redis_server.url, "--workers", "1", "--strategy", "forking",
                      "--timeout", "2")
    [worker_pid] = pool.workers(1)
    horse = int(wait_until(lambda: connection.hget("running", hung.id), 10, "the job"))
    grandchild = int(wait_until(lambda: connection.hget("grandchild", hung.id), 5, "sleep"))
    registry = FailedJobRegistry("default", connection=connection)
    wait_until(lambda: hung.id in registry.get_job_ids(), 8, "the hung job failed")
    reason = hung.latest_result().exc_string
    assert "killed by signal 9" in reason and str(worker_pid) in reason, reason
    for pid in (worker_pid, horse, grandchild):
        wait_until(lambda pid=pid: gone(pid), 2, f"pid {pid} gone")
    pool.workers(2)  # and a replacement listens
    pool.signal(signal.SIGQUIT)
    assert pool.wait() == 0


def test_queue_priority_is_honoured(connection, redis_server, start_pool) -> None:
    low = enqueue(connection, "low", 30)
    high = enqueue(connection, "high", 30)
    pool = start_pool(redis_server.url, "--queues", "high,low", "--workers", "1")
    wait_until(lambda: connection.hlen("runs") == 60, 15, "all 60 jobs")
    order = [tag.decode() for tag in connection.lrange("order", 0, -1)]
    assert order == [f"high-{i}" for i in range(30)] + [f"low-{i}" for i in range(30)]
    assert len(low) == len(high) == 30
    more_low = enqueue(connection, "low", 1)
    wait_until(lambda: connection.hget("runs", more_low[0]), 5, "a job into an idle pool")
    pool.signal(signal.SIGQUIT)
    assert pool.wait() == 0


@pytest.mark.timeout(45)
def test_redis_stopped_for_10s_does_not_kill_the_pool_nor_lose_a_job(
        fresh_server, start_pool) -> None:
    connection = redis.Redis.from_url(fresh_server.url)
    ids = enqueue(connection, "default", 400, func="rq_tasks.nap", kwargs={"seconds": 0.01},
                  retry=Retry(max=3))
    pool = start_pool(fresh_server.url, "--workers", "2")
    workers = pool.workers(2)
    wait_until(lambda: connection.hlen("runs") >= 50, 15, "50 jobs done")
    fresh_server.stop(save=True)
    stopped_at = time.monotonic()
    pool.expect(r"Redis unreachable", 5)
    time.sleep(max(0.0, 10 - (time.monotonic() - stopped_at)))
    assert pool.process.poll() is None, "the master lives through the outage"
    fresh_server.start()
    connection = redis.Redis.from_url(fresh_server.url)
    wait_until(lambda: connection.hlen("runs") >= len(ids), 20, "every job after the outage")
    pool.expect(r"Redis reachable again", 5)
    done = runs(connection)
    assert set(done) == set(ids), "no job lost"
    assert sum(done.values()) == len(ids), f"and none twice: {sum(done.values())}"
    assert sorted(int(p) for p in workers) == sorted(pool.workers(2)), "same workers"
    assert "crashed" not in pool.log()
    pool.signal(signal.SIGQUIT)
    assert pool.wait() == 0
    connection.close()


def test_burst_mode_drains_and_exits_0(connection, redis_server, start_pool) -> None:
    ids = enqueue(connection, "default", 200)
    pool = start_pool(redis_server.url, "--workers", "3", "--burst")
    assert pool.wait(20) == 0
    assert set(runs(connection)) == set(ids)
    empty = start_pool(redis_server.url, "--workers", "2", "--burst")
    assert empty.wait(10) == 0, "empty queues: exits 0 at once"
    assert Worker.all(connection=connection) == []
