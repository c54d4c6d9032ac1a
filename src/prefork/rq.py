"""RQ workers in prefork pools: ``pip install 'prefork[rq]'``.

``RQJob`` is a prefork job whose every perform takes one RQ job from its queues, in
priority order, and runs it with RQ's own machinery (its worker's execution records,
registries, results, retries, callbacks, failure handling and exception handlers), so
that ``rq info`` and RQ's dashboards see ordinary workers::

    import prefork
    from prefork.rq import RQJob

    job = RQJob(["high", "default"], redis_url="redis://localhost:6379/0")
    prefork.Master(job, workers=4, **job.master_hooks()).run()

or ``prefork run "prefork.rq:RQJob(queues=['high', 'default'])" -w 4``.

Theory of operation
-------------------

**One worker, one RQ worker.** Each prefork worker connects to Redis in ``setup()`` (after
the fork and the ``after_fork`` hook: no socket is shared between processes) and
registers as an RQ worker named ``{name_prefix}.{host}.{pid}``: the master, which knows
only pids, finds it by that name. ``Worker.work()`` is never called (it installs its own
SIGINT/SIGTERM handlers and bootstraps again); prefork's loop calls ``perform()``.

**Taking a job, and not losing it.** RQ's multi-queue ``BLPOP`` pops a job id that exists
nowhere else until the worker records it: a KILL in between loses the job without a
trace. Here each worker has a *claim list* (``rq:worker:NAME:claimed``). A Lua script
moves the first id of the first non-empty queue (priority order) into it with ``LMOVE``,
atomically; when every queue is empty the worker blocks (at most ``poll_timeout``) in
``BLMOVE`` from one queue into the claim list (worker *slot* mod the number of queues,
turning each poll, so that each queue has a worker waiting on it); an empty poll returns
``prefork.IDLE``. One transaction then records the RQ execution (started registry,
the worker's execution index, job status) and removes the id from the claim list: at
every moment the id is in a queue, in a claim list, or in an execution. A claim whose
reply was lost (a Redis outage) is found again by the next poll, which looks at the
claim list first.

**Two modes, chosen by the pool's strategy.** With ``simple`` the job runs in the
worker, as ``rq.SimpleWorker`` does. With ``forking`` the worker takes the job
(``take()``, before the fork), the perform child runs it (RQ's work horse), and the
worker accounts for it after the child is reaped (``settle(status)``): a horse that
died (KILL, a crash in C code) has its job failed by the worker at once, with its wait
status, as RQ's ``monitor_work_horse`` does. The horse is prefork's perform child: it
stays in the worker's process group (RQ's own horse calls ``setpgrp``), it is KILLed
if its worker dies, and a ``timeout``'s group KILL reaches it and all it started.

**Signals.** RQ's handlers are never installed: prefork's are. RQ's ``shutdown`` command
(which sends SIGINT, a *quick* stop in prefork) is turned into a graceful stop of the one
worker (QUIT to itself: it finishes the job, and the master replaces it);
``kill-horse`` and ``stop-job`` KILL the horse (``forking``) and are refused in-process
(``simple``), as by ``rq.SimpleWorker``. RQ's job timeout (``job.timeout``) normally
takes SIGALRM for itself and, once the job is over, puts back the *default* action, so
that a later SIGALRM would kill the worker: prefork's ``soft_timeout`` uses SIGALRM
too. Here RQ's ``death_penalty_class`` is ``NestedAlarmDeathPenalty``: it shares the
one real-time timer, arming it for whichever deadline comes first (the RQ job's own
timeout, or the ``soft_timeout`` around the whole perform), raising
``JobTimeoutException`` for the first and handing the signal to prefork's handler for
the second, and it puts back the handler and the remaining time it found. The hard
``timeout`` (ABRT, then KILL to the group) stays the backstop for a job stuck in C code.

**No job lost.** A graceful stop (QUIT) lets the running job finish: the perform ends,
then the worker. A quick stop (TERM, INT) raises ``prefork.Shutdown`` inside the job;
the job is failed through RQ (``handle_job_failure``: retries apply) with the reason,
and, unless ``requeue_interrupted=False``, put back at the front of its queue
(``job.requeue(at_front=True)``). TERM and INT are held back (blocked) while RQ's own
writes before and after the job run, so a quick stop never tears RQ's bookkeeping in
two. A worker that dies (KILL, the OOM killer, a timeout) is found by the master's
``on_worker_exit`` hook (``master_hooks()``) within milliseconds: the jobs it was
running are failed with the reason ("worker pid=N on HOST was killed by signal 9
(SIGKILL) while running it"), the ids in its claim list go back to the front of their
queues, and its RQ worker record is closed. Without the hook (the command line), each
new worker does the same for the dead workers of its host in ``setup()`` (pids that are
gone), so a replaced worker's job is failed as soon as its replacement starts. A
machine that dies leaves its jobs where RQ's own recovery finds them (the started
registry's clean-up).

**Redis outages.** An empty or failed poll returns ``IDLE`` after a back-off (0.5 s,
doubling to 5 s), logged once per outage and again when Redis answers; the worker stays
up and sees stop requests. While a job runs, every Redis write of RQ's waits and retries
until Redis answers again (logged likewise), so the job's outcome is written once Redis
is back, not lost.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import redis
from redis.retry import Retry
from rq.command import handle_command, parse_payload
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.executions import Execution
from rq.job import Job as RQJobRecord
from rq.job import JobStatus
from rq.queue import Queue
from rq.timeouts import BaseDeathPenalty, JobTimeoutException
from rq.utils import now
from rq.worker import SimpleWorker, WorkerStatus

from prefork.interrupts import Shutdown
from prefork.job import IDLE, Job

__all__ = ["NestedAlarmDeathPenalty", "PreforkRQWorker", "RQJob", "pool_job",
           "redis_url_for", "worker_name"]

log = logging.getLogger("prefork.rq")

QUICK_STOPS = frozenset({signal.SIGTERM, signal.SIGINT})
DEFAULT_REDIS_URL = "redis://localhost:6379/0"
_DONE = (JobStatus.FINISHED, JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED)

# KEYS: the claim list, then the queues in priority order. The claim list first: an id
# left there by a claim whose reply never came back is claimed again, not lost.
_CLAIM = """
local held = redis.call('LINDEX', KEYS[1], 0)
if held then return held end
for i = 2, #KEYS do
  local id = redis.call('LMOVE', KEYS[i], KEYS[1], 'LEFT', 'RIGHT')
  if id then return id end
end
return false
"""

# KEYS: the claim list. ARGV: the job key prefix, the queue key prefix. Each id goes back
# to the front of its queue (the job's origin), the last first, so that their order
# stays; ids of jobs that no longer exist are dropped. Returns how many went back.
_UNCLAIM = """
local back = 0
while true do
  local id = redis.call('RPOP', KEYS[1])
  if not id then return back end
  local origin = redis.call('HGET', ARGV[1] .. id, 'origin')
  if origin then
    redis.call('LPUSH', ARGV[2] .. origin, id)
    back = back + 1
  end
end
"""


def worker_name(pid: int, prefix: str = "prefork", host: str | None = None) -> str:
    """The RQ worker name of the prefork worker ``pid`` on ``host`` (default: this one)."""
    return f"{prefix}.{host or socket.gethostname()}.{pid}"


def redis_url_for(pool: str | None = None, top: str | None = None,
                  environ: dict[str, str] | None = None) -> str:
    """The Redis URL of a pool: its own ``redis_url``, else ``REDIS_URL``, else the file's
    top-level ``redis_url``, else ``redis://localhost:6379/0``."""
    environ = os.environ if environ is None else environ  # type: ignore[assignment]
    return pool or environ.get("REDIS_URL") or top or DEFAULT_REDIS_URL  # type: ignore[union-attr]


def pool_job(pool: str, queues: str | Sequence[str] | None = None,
             redis_url: str | None = None, burst: bool = False,
             top_redis_url: str | None = None, **options: Any) -> RQJob:
    """The job of a resque-pool-style pool table: ``[pool."high,default"]``.

    ``queues`` default to the pool's name split on commas (as resque-pool does); the
    Redis URL is the pool's ``redis_url``, else ``$REDIS_URL``, else the file's top-level
    ``redis_url`` (``top_redis_url``), else ``redis://localhost:6379/0``; the other
    keyword arguments are ``RQJob``'s (``poll_timeout``, ``requeue_interrupted``...).
    """
    return RQJob(queues if queues is not None else pool,
                 redis_url_for(redis_url, top_redis_url), burst=burst, **options)


def queue_names(queues: str | Iterable[str]) -> list[str]:
    """``"high,default"`` or ``["high", "default"]`` -> ``["high", "default"]``."""
    names = queues.split(",") if isinstance(queues, str) else list(queues)
    names = [name.strip() for name in names if name and name.strip()]
    if not names:
        raise ValueError("an RQ pool needs at least one queue")
    return names


def describe_exit(code: int) -> str:
    """An exit code, or minus a signal's number (``os.waitstatus_to_exitcode``), in words."""
    if code < 0:
        try:
            return f"was killed by signal {-code} ({signal.Signals(-code).name})"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"


def describe_status(status: int) -> str:
    """A wait status (``waitpid``'s), in words."""
    try:
        return describe_exit(os.waitstatus_to_exitcode(status))
    except ValueError:
        return f"ended with wait status {status}"


# --- timeouts -------------------------------------------------------------------------------

class NestedAlarmDeathPenalty(BaseDeathPenalty):
    """RQ's job timeout on SIGALRM, sharing the one real-time timer with prefork's.

    RQ's ``UnixSignalDeathPenalty`` takes SIGALRM, arms ``alarm()`` and, once the job is
    over, sets SIGALRM back to its *default* action (which ends the process): prefork's
    ``soft_timeout`` handler would be gone, and its next timer would kill the worker.
    This one arms the timer for whichever comes first, its own deadline or the one it
    found armed (prefork's ``soft_timeout`` around the whole perform); when the signal
    comes it raises ``JobTimeoutException`` for its own deadline and calls the handler
    it found for the other; on the way out it puts back that handler and the time that
    was left. Cost: six system calls around each job, a few microseconds.
    """

    def __init__(self, timeout: float, exception: type[BaseException] = JobTimeoutException,
                 **kwargs: Any) -> None:
        super().__init__(timeout, exception, **kwargs)
        self._previous: Any = None
        self._outer_deadline: float | None = None
        self._deadline: float | None = None

    def setup_death_penalty(self) -> None:
        if self._timeout is None or self._timeout <= 0:  # -1: RQ's "no timeout"
            return
        clock = time.monotonic()
        self._deadline = clock + self._timeout
        self._previous = signal.getsignal(signal.SIGALRM)
        left, _interval = signal.getitimer(signal.ITIMER_REAL)
        self._outer_deadline = clock + left if left > 0 else None
        signal.signal(signal.SIGALRM, self._on_alarm)
        first = self._timeout if self._outer_deadline is None else min(self._timeout, left)
        signal.setitimer(signal.ITIMER_REAL, max(first, 1e-6))

    def _on_alarm(self, signo: int, frame: Any) -> None:
        clock = time.monotonic()
        outer = self._outer_deadline
        if outer is not None and clock >= outer - 0.001 and (
                self._deadline is None or outer <= self._deadline):
            self._outer_deadline = None
            previous = self._previous
            signal.signal(signal.SIGALRM, previous if previous is not None else signal.SIG_DFL)
            if callable(previous):
                previous(signo, frame)
            return
        assert self._deadline is not None
        if clock < self._deadline - 0.001:  # early (rounding): wait for the rest
            signal.setitimer(signal.ITIMER_REAL, self._deadline - clock)
            return
        raise self._exception(f"Task exceeded maximum timeout value ({self._timeout} seconds)")

    def cancel_death_penalty(self) -> None:
        if self._deadline is None:
            return
        signal.setitimer(signal.ITIMER_REAL, 0)
        previous = self._previous
        signal.signal(signal.SIGALRM, previous if previous is not None else signal.SIG_DFL)
        if self._outer_deadline is not None:
            left = self._outer_deadline - time.monotonic()
            signal.setitimer(signal.ITIMER_REAL, max(left, 1e-6))
        self._deadline = self._outer_deadline = None


# --- Redis, patient while a job is in flight ------------------------------------------------

class _Patience(Retry):
    """redis-py's retry policy for a worker's connection, with a switch and a log.

    Impatient (polling): a connection error is raised at once, and the perform backs off.
    Patient (a job in flight): every command is retried, with a back-off doubling from
    0.1 s to 2 s, until Redis answers, so that the job's outcome is written, not lost.
    Each outage is logged once, and its end.
    """

    def __init__(self, label: Callable[[], str]) -> None:
        super().__init__(_NoBackoff(), 0)
        self.patient = False
        self.label = label
        self.failing_since: float | None = None

    def __deepcopy__(self, memo: dict[int, Any]) -> _Patience:
        return self  # redis-py copies its retry policy: the switch must stay one

    def call_with_retry(self, do: Callable[[], Any], fail: Callable[..., Any],
                        is_retryable: Callable[[Exception], bool] | None = None,
                        with_failure_count: bool = False) -> Any:
        failures = 0
        while True:
            try:
                result = do()
            except self._supported_errors as error:
                failures += 1
                if with_failure_count:
                    fail(error, failures)
                else:
                    fail(error)
                if not self.patient or (is_retryable is not None and not is_retryable(error)):
                    raise
                delay = min(2.0, 0.1 * 2 ** (failures - 1))
                self.outage(error, f"retrying in {delay:.1f}s while a job is in flight")
                time.sleep(delay)
            else:
                if self.failing_since is not None:
                    self.recovered()
                return result

    def outage(self, error: BaseException, then: str) -> None:
        if self.failing_since is None:
            self.failing_since = time.monotonic()
            log.warning("%s: Redis unreachable (%s: %s); %s", self.label(),
                        type(error).__name__, error, then)

    def recovered(self) -> None:
        if self.failing_since is not None:
            log.warning("%s: Redis reachable again after %.1fs; reconnected", self.label(),
                        time.monotonic() - self.failing_since)
            self.failing_since = None


class _NoBackoff:
    def reset(self) -> None:
        pass

    def compute(self, failures: int) -> float:
        return 0.0


# --- the RQ worker --------------------------------------------------------------------------

class PreforkRQWorker(SimpleWorker):
    """RQ's ``SimpleWorker``, driven by prefork: no ``work()``, no signal handlers of its
    own, job timeouts that share SIGALRM, commands turned into prefork's stops."""

    death_penalty_class = NestedAlarmDeathPenalty
    horse: Callable[[], int | None] = staticmethod(lambda: None)  # type: ignore[assignment]

    def _set_connection(self, connection: redis.Redis) -> redis.Redis:
        return connection  # RQ would raise the socket timeout to minutes: a poll is short

    def _install_signal_handlers(self) -> None:
        pass  # prefork's handlers stay

    def handle_payload(self, message: dict[str, Any]) -> None:
        """RQ's commands, from its pubsub thread."""
        payload = parse_payload(message)
        command = payload.get("command")
        if command == "shutdown":
            self.log.info("Worker %s: shutdown command: stopping gracefully (QUIT)", self.name)
            os.kill(os.getpid(), signal.SIGQUIT)
        elif command in ("kill-horse", "stop-job", "stop-execution"):
            horse = self.horse()
            if command != "kill-horse":
                job_id = payload.get("job_id")
                current = next(iter(self.executions.values()), None)
                if current is None or (job_id and current.job_id != job_id):
                    self.log.warning("Worker %s: not running job %s: ignored", self.name, job_id)
                    return
                if horse is None:
                    self.log.warning("Worker %s: %s: a job running in-process cannot be "
                                     "stopped (use the forking strategy)", self.name, command)
                    return
                self._stopped_job_id = current.job_id
            if horse is not None:
                with contextlib.suppress(OSError):
                    os.kill(horse, signal.SIGKILL)
        else:
            handle_command(self, payload)


# --- the job --------------------------------------------------------------------------------

class RQJob(Job):
    """A prefork job that works RQ queues: one RQ job per perform.

    ``queues``: names in priority order (a list, or ``"high,default"``). ``redis_url``:
    default ``$REDIS_URL``, else ``redis://localhost:6379/0``. ``poll_timeout``: how long
    a poll of empty queues blocks (seconds; stop requests are seen between polls).
    ``burst``: the first worker that finds every queue empty asks the master to stop
    gracefully (QUIT), so the pool drains and exits 0. ``requeue_interrupted``: a job
    interrupted by a quick stop is failed through RQ *and* put back at the front of its
    queue (False: failed only). ``commands``: listen for RQ's worker commands (a pubsub
    thread per worker, as RQ's workers do). ``name_prefix``: RQ worker names are
    ``{name_prefix}.{host}.{pid}``. ``worker_class``, ``job_class``, ``queue_class``,
    ``serializer``, ``result_ttl``, ``worker_ttl``, ``exception_handlers``: as RQ's.
    """

    def __init__(
        self,
        queues: str | Sequence[str] = ("default",),
        redis_url: str | None = None,
        *,
        poll_timeout: float = 1.0,
        burst: bool = False,
        requeue_interrupted: bool = True,
        commands: bool = True,
        name_prefix: str = "prefork",
        worker_class: type[PreforkRQWorker] = PreforkRQWorker,
        job_class: type[RQJobRecord] | None = None,
        queue_class: type[Queue] | None = None,
        serializer: Any = None,
        result_ttl: int | None = None,
        worker_ttl: int | None = None,
        exception_handlers: Sequence[Callable[..., Any]] | None = None,
        maintenance: bool = True,
    ) -> None:
        self.queues = queue_names(queues)
        self.redis_url = redis_url_for(redis_url)
        if poll_timeout <= 0:
            raise ValueError(f"poll_timeout must be > 0 seconds, not {poll_timeout!r}")
        self.poll_timeout = float(poll_timeout)
        self.burst = bool(burst)
        self.requeue_interrupted = bool(requeue_interrupted)
        self.commands = bool(commands)
        self.name_prefix = name_prefix
        self.worker_class = worker_class
        self.job_class = job_class or RQJobRecord
        self.queue_class = queue_class or Queue
        self.serializer = serializer
        self.result_ttl = result_ttl
        self.worker_ttl = worker_ttl
        self.exception_handlers = list(exception_handlers or ())
        self.maintenance = maintenance
        # in each worker, from setup()
        self.connection: redis.Redis | None = None
        self.rq: PreforkRQWorker | None = None
        self._taken: tuple[RQJobRecord, Queue, Execution] | None = None
        self._master_connection: tuple[int, redis.Redis] | None = None
        self.master_recovers = False  # master_hooks() was asked for: on_worker_exit runs

    def __repr__(self) -> str:
        return f"RQJob(queues={self.queues!r}, redis_url={_safe_url(self.redis_url)!r})"

    # in each worker ---------------------------------------------------------------------

    def setup(self) -> None:
        pid = os.getpid()
        self.name = worker_name(pid, self.name_prefix)
        self._retry = _Patience(lambda: f"rq worker {self.name}")
        self.connection = redis.Redis.from_url(
            self.redis_url, retry=self._retry, socket_connect_timeout=5,
            socket_timeout=self.poll_timeout + 10, socket_keepalive=True,
            health_check_interval=30)
        kwargs: dict[str, Any] = {}
        if self.result_ttl is not None:
            kwargs["default_result_ttl"] = self.result_ttl
        if self.worker_ttl is not None:
            kwargs["worker_ttl"] = self.worker_ttl
        rq = self.worker_class(
            self.queues, name=self.name, connection=self.connection,
            job_class=self.job_class, queue_class=self.queue_class,
            serializer=self.serializer, exception_handlers=self.exception_handlers, **kwargs)
        rq.log = logging.getLogger("rq.worker")
        rq.horse = self._horse_pid
        self.rq = rq
        self._queues = {queue.name: queue for queue in rq.queues}
        self._queue_keys = [queue.key for queue in rq.queues]
        self._claimed = f"{rq.key}:claimed"
        self._claim = self.connection.register_script(_CLAIM)
        self._turn = self.worker.slot if self.worker is not None else 0
        self._block_next = False  # the first poll after a job does not block
        self._told_master = False
        self._backoff = 0.0
        self._last_beat = 0.0
        # whatever a dead worker of this host left (this pid's own earlier life included)
        self.recover_dead_workers(others=not self.master_recovers)
        rq.register_birth()
        rq.set_state(WorkerStatus.STARTED)
        if self.commands:
            rq.subscribe()
        log.info("rq worker %s: listening on %s at %s", self.name, ",".join(self.queues),
                 _safe_url(self.redis_url))

    def teardown(self) -> None:
        rq = self.rq
        if rq is None:
            return
        self._retry.patient = False
        with contextlib.suppress(redis.RedisError, OSError):
            self._return_claimed(self.connection, self._claimed)  # type: ignore[arg-type]
            rq.register_death()
        # RQ's pubsub thread is left alone: stopping it joins it, and it may sit in a read
        # for a minute; it is a daemon thread, gone with the process

    def perform(self) -> object:
        """One RQ job, or ``IDLE``: in the worker (simple), or the one ``take()`` took
        (forking: this runs in the perform child)."""
        taken = self._taken
        if taken is None:
            taken = self._take()
            if taken is None:
                return IDLE
            if self.worker is not None:
                self.worker.heartbeat()  # busy from here
        self._run(*taken)
        return None

    def take(self) -> object:
        """Forking strategy, in the worker before the fork: take the job the child runs."""
        taken = self._take()
        if taken is None:
            return IDLE
        self._taken = taken
        return taken[0]

    def settle(self, pid: int, status: int) -> None:
        """Forking strategy, in the worker once the child ``pid`` is reaped: fail the job
        of a horse that died with it (as RQ's ``monitor_work_horse`` does)."""
        taken, self._taken = self._taken, None
        if taken is None:
            return
        job, queue, execution = taken
        rq = self.rq
        assert rq is not None
        rq.executions.pop(execution.id, None)
        if status == 0:
            return
        self._retry.patient = True
        try:
            mask = signal.pthread_sigmask(signal.SIG_BLOCK, QUICK_STOPS)
            try:
                if job.get_status(refresh=True) in _DONE:
                    return
                reason = (f"Work-horse terminated unexpectedly: horse pid={pid} (perform "
                          f"child of worker pid={os.getpid()}) {describe_status(status)}")
                log.warning("rq worker %s: job %s failed (%s)", self.name, job.id, reason)
                job.ended_at = now()
                rq.handle_job_failure(job, queue, exc_string=reason, execution=execution)
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        except (redis.RedisError, NoSuchJobError):
            log.exception("rq worker %s: could not fail job %s", self.name, job.id)
        finally:
            self._retry.patient = False

    # taking a job -----------------------------------------------------------------------

    def _take(self) -> tuple[RQJobRecord, Queue, Execution] | None:
        """Claim one job id and start its execution; None when the queues are empty."""
        rq, connection = self.rq, self.connection
        assert rq is not None and connection is not None
        try:
            self._maintain()
            job_id = self._claim(keys=[self._claimed, *self._queue_keys])
            if job_id is None and self.burst:
                self._burst_done()
                return None
            if job_id is None and self._block_next:
                turn = self._turn % len(self._queue_keys)
                self._turn += 1
                job_id = connection.blmove(self._queue_keys[turn], self._claimed,
                                           self.poll_timeout, "LEFT", "RIGHT")
            self._block_next = job_id is None
            if job_id is None:
                return None
            self._retry.recovered()
            self._backoff = 0.0
            return self._start(job_id.decode() if isinstance(job_id, bytes) else job_id)
        except Shutdown:
            self._interrupted_while_taking()
            raise
        except (redis.ConnectionError, redis.TimeoutError) as error:
            self._back_off(error)
            return None

    def _start(self, job_id: str) -> tuple[RQJobRecord, Queue, Execution] | None:
        """Record the execution and take the id out of the claim list, in one transaction
        (TERM and INT held back meanwhile: RQ's records are written whole)."""
        rq, connection = self.rq, self.connection
        assert rq is not None and connection is not None
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, QUICK_STOPS)
        self._retry.patient = True
        try:
            try:
                job = self.job_class.fetch(job_id, connection=connection,
                                           serializer=rq.serializer)
            except NoSuchJobError:
                connection.lrem(self._claimed, 1, job_id)
                return None
            except Exception:
                log.exception("rq worker %s: job %s cannot be read; dropped", self.name, job_id)
                connection.lrem(self._claimed, 1, job_id)
                return None
            queue = self._queues.get(job.origin) or self.queue_class(
                job.origin, connection=connection, job_class=self.job_class,
                serializer=rq.serializer, death_penalty_class=rq.death_penalty_class)
            job.redis_server_version = rq.get_redis_server_version()
            with connection.pipeline() as pipeline:
                ttl = rq.get_heartbeat_ttl(job)
                execution = Execution.create(job, ttl, pipeline=pipeline, worker_name=rq.name)
                rq.executions[execution.id] = execution
                rq.set_state(WorkerStatus.BUSY, pipeline=pipeline)
                rq.heartbeat(ttl, pipeline=pipeline)
                job.heartbeat(now(), ttl, pipeline=pipeline)
                job.prepare_for_execution(rq.name, pipeline=pipeline)
                pipeline.persist(job.key)
                pipeline.lrem(self._claimed, 1, job_id)
                pipeline.execute()
            self._last_beat = time.monotonic()
            return job, queue, execution
        finally:
            self._retry.patient = False
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)

    def _maintain(self) -> None:
        """Now and then between jobs: the RQ worker's heartbeat, RQ's registry clean-up."""
        rq = self.rq
        assert rq is not None
        clock = time.monotonic()
        if clock - self._last_beat > 15:
            rq.heartbeat()
            self._last_beat = clock
        if self.maintenance and rq.should_run_maintenance_tasks:
            rq.run_maintenance_tasks()

    def _burst_done(self) -> None:
        """Burst: every queue is empty: ask the master for a graceful stop, once."""
        if not self._told_master:
            self._told_master = True
            log.info("rq worker %s: queues %s empty (burst): stopping the pool", self.name,
                     ",".join(self.queues))
            with contextlib.suppress(OSError):
                os.kill(os.getppid(), signal.SIGQUIT)
        time.sleep(min(self.poll_timeout, 0.1))

    def _back_off(self, error: BaseException) -> None:
        """Redis did not answer a poll: wait (0.5 s, doubling to 5 s), seeing stops."""
        self._backoff = min(5.0, self._backoff * 2 or 0.5)
        self._retry.outage(error, "backing off and reconnecting")
        deadline = time.monotonic() + self._backoff
        while time.monotonic() < deadline:
            if self.worker is not None:
                if self.worker.stopping:
                    return
                self.worker.heartbeat()
            time.sleep(0.05)

    def _interrupted_while_taking(self) -> None:
        """A quick stop during a poll: the ids claimed go back to their queues."""
        with contextlib.suppress(redis.RedisError, OSError):
            self._return_claimed(self.connection, self._claimed)  # type: ignore[arg-type]

    # running a job ----------------------------------------------------------------------

    def _run(self, job: RQJobRecord, queue: Queue, execution: Execution) -> None:
        """Run ``job`` as RQ's ``perform_job`` does, with TERM and INT held back except
        while the job's own code runs."""
        rq = self.rq
        assert rq is not None
        quick = QUICK_STOPS
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, quick)
        self._retry.patient = True
        try:
            rq.procline(f"Processing {job.func_name} from {job.origin} since {time.time()}")
            job.started_at = now()
            timeout = job.timeout or self.queue_class.DEFAULT_TIMEOUT
            try:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, quick)
                try:
                    with rq.death_penalty_class(timeout, JobTimeoutException, job_id=job.id):
                        value = job.perform()
                finally:
                    signal.pthread_sigmask(signal.SIG_BLOCK, quick)
            except Shutdown as stop:
                self._interrupted(job, queue, execution, stop)
                raise
            except BaseException:
                rq._finalize_failure(job, queue, execution, sys.exc_info())
            else:
                try:
                    rq._finalize_success(job, queue, execution, value)
                except Exception:
                    rq._finalize_failure(job, queue, execution, sys.exc_info())
            rq.executions.pop(execution.id, None)
            rq.set_state(WorkerStatus.IDLE)
        finally:
            self._retry.patient = False
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)

    def _interrupted(self, job: RQJobRecord, queue: Queue, execution: Execution,
                     stop: BaseException) -> None:
        """A quick stop inside the job: fail it through RQ with the reason, then put it
        back at the front of its queue (``requeue_interrupted``)."""
        rq = self.rq
        assert rq is not None
        reason = (f"prefork.Shutdown: a quick stop ({stop}) interrupted the job in worker "
                  f"pid={os.getpid()}")
        job.ended_at = now()
        rq.handle_job_failure(job, queue, exc_string=reason, execution=execution)
        rq.executions.pop(execution.id, None)
        if self.requeue_interrupted and job.get_status(refresh=True) == JobStatus.FAILED:
            with contextlib.suppress(InvalidJobOperation):
                job.requeue(at_front=True)
                reason += "; re-queued"
        log.warning("rq worker %s: job %s: %s", self.name, job.id, reason)

    def _horse_pid(self) -> int | None:
        """The perform child running the job (forking strategy), for RQ's commands."""
        if self._taken is None:
            return None
        pid = os.getpid()
        try:
            with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as file:
                children = [int(word) for word in file.read().split()]
        except OSError:
            return None
        return children[0] if children else None

    # recovering what dead workers left ----------------------------------------------------

    def master_hooks(self) -> dict[str, Callable[..., Any]]:
        """The master hooks this job needs: ``Master(job, **job.master_hooks())``.

        Asked for before the workers are forked, it also tells them that the master
        recovers what dead workers leave, so they do not scan for it in ``setup()``.
        """
        self.master_recovers = True
        return {"on_worker_exit": self.on_worker_exit}

    def on_worker_exit(self, pid: int, status: int) -> None:
        """In the master, after a worker is reaped (``status``: its exit code, or minus
        the signal that killed it): fail the jobs it was running (with
        the reason), put back what it had claimed, close its RQ worker record. Bounded:
        Redis gets 1 s, then RQ's own clean-up is left to find the job."""
        name = worker_name(pid, self.name_prefix)
        if status == 0:
            reason = f"worker pid={pid} on {socket.gethostname()} stopped while running it"
            requeue = self.requeue_interrupted
        else:
            reason = (f"worker pid={pid} on {socket.gethostname()} "
                      f"{describe_exit(status)} while running it")
            requeue = False
        try:
            recovered = self.recover(self._connection_in_master(), name, reason, requeue)
        except (redis.RedisError, OSError) as error:
            log.warning("rq: could not recover the jobs of worker %s (%s); RQ's clean-up "
                        "will find them", name, error)
            return
        if recovered:
            log.warning("rq: worker %s: %s", name, "; ".join(recovered))

    def _connection_in_master(self) -> redis.Redis:
        pid = os.getpid()
        held = self._master_connection
        if held is None or held[0] != pid:
            connection = redis.Redis.from_url(self.redis_url, socket_connect_timeout=1,
                                              socket_timeout=1)
            held = self._master_connection = (pid, connection)
        return held[1]

    def recover_dead_workers(self, others: bool = True) -> None:
        """In ``setup()``: recover the record of this worker's name (an earlier process
        with this pid) and, with ``others``, the workers of this host named as ours whose
        pid is gone (their master has no ``on_worker_exit`` hook)."""
        connection = self.connection
        assert connection is not None
        prefix = self.worker_class.redis_worker_namespace_prefix
        mine = worker_name(0, self.name_prefix)[:-1]  # "prefork.HOST."
        own = worker_name(os.getpid(), self.name_prefix)
        keys = connection.smembers(self.worker_class.redis_workers_keys) if others else (
            [f"{prefix}{own}".encode()] if connection.exists(f"{prefix}{own}") else [])
        for key in keys:
            name = key.decode()[len(prefix):]
            if not name.startswith(mine):
                continue
            try:
                pid = int(name[len(mine):])
            except ValueError:
                continue
            if name != own and _pid_alive(pid):
                continue
            reason = (f"worker pid={pid} on {socket.gethostname()} died while running it "
                      f"(found by worker {self.name})")
            recovered = self.recover(connection, name, reason, requeue=False)
            if recovered:
                log.warning("rq worker %s: dead worker %s: %s", self.name, name,
                            "; ".join(recovered))
        # a claim list of this very name (an earlier process with this pid)
        self._return_claimed(connection, f"{prefix}{own}:claimed")

    def recover(self, connection: redis.Redis, name: str, reason: str,
                requeue: bool) -> list[str]:
        """Fail the executions of worker ``name`` with ``reason`` (and re-queue them if
        ``requeue``), put its claimed ids back, close its record; what was done."""
        prefix = self.worker_class.redis_worker_namespace_prefix
        key = prefix + name
        if not connection.set(f"{key}:recovering", os.getpid(), nx=True, ex=30):
            return []  # someone else is at it
        done: list[str] = []
        try:
            rq = self.worker_class.find_by_key(
                key, connection=connection, job_class=self.job_class,
                queue_class=self.queue_class, serializer=self.serializer)
            if rq is None:
                rq = self.worker_class([], name=name, connection=connection,
                                       job_class=self.job_class, queue_class=self.queue_class,
                                       serializer=self.serializer, prepare_for_work=False)
            rq.log = logging.getLogger("rq.worker")
            for execution in rq.get_current_executions(refresh=True):
                done.append(self._fail_execution(rq, execution, reason, requeue))
            back = self._return_claimed(connection, f"{key}:claimed")
            if back:
                done.append(f"{back} claimed job(s) put back at the front of their queues")
            if connection.exists(key):
                rq.register_death()
            else:
                connection.srem(self.worker_class.redis_workers_keys, key)
                connection.delete(rq.executions_key)
        finally:
            connection.delete(f"{key}:recovering")
        return done

    def _fail_execution(self, rq: PreforkRQWorker, execution: Execution, reason: str,
                        requeue: bool) -> str:
        connection = rq.connection
        try:
            job = self.job_class.fetch(execution.job_id, connection=connection,
                                       serializer=rq.serializer)
        except NoSuchJobError:
            connection.srem(rq.executions_key, execution.composite_key)
            return f"job {execution.job_id} is gone"
        if job.get_status(refresh=False) in _DONE:
            with connection.pipeline() as pipeline:
                rq.cleanup_execution(job, pipeline=pipeline, execution=execution)
                pipeline.execute()
            return f"job {job.id} was over already"
        queue = self.queue_class(job.origin, connection=connection, job_class=self.job_class,
                                 serializer=rq.serializer)
        job.ended_at = now()
        rq.handle_job_failure(job, queue, exc_string=reason, execution=execution)
        what = f"job {job.id} failed ({reason})"
        if requeue and job.get_status(refresh=True) == JobStatus.FAILED:
            with contextlib.suppress(InvalidJobOperation):
                job.requeue(at_front=True)
                what += " and re-queued"
        return what

    def _return_claimed(self, connection: redis.Redis, claimed: str) -> int:
        return int(connection.eval(
            _UNCLAIM, 1, claimed, self.job_class.redis_job_namespace_prefix,
            self.queue_class.redis_queue_namespace_prefix) or 0)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _safe_url(url: str) -> str:
    """``url`` without its password, for the log."""
    scheme, sep, rest = url.partition("://")
    if "@" not in rest:
        return url
    credentials, _, host = rest.rpartition("@")
    user = credentials.partition(":")[0]
    return f"{scheme}{sep}{user + ':***@' if user else '***@'}{host}"
