"""The restart policy: how long a slot waits before it is refilled, and when to give up.

Two rules, both pure arithmetic over the failures they are told about:

* **Back-off**, per group and per slot. The first failure of a slot is replaced at once
  (a worker killed by an operator comes straight back); each further failure in a row
  waits ``restart_backoff``, doubling, capped at ``restart_backoff_max`` (the group's own
  options). A run of failures ends when a live worker of the slot is seen to have
  performed, or when a worker that failed had been ready (since its first reading of
  idle or performing) at least ``restart_backoff_max``. A worker that never finished its
  setup never ran long enough, however long it hung in it.
* **Intensity**, for the whole master (OTP-style): more than ``max_restarts`` failures
  within ``restart_period`` seconds, and the master gives up.

Which ends are failures, and what each costs, is decided here, by class (``COSTS``),
and each failure is counted once, at the moment the master stops waiting for the
worker: a fork failure when it is reported, a crash, a kill or a failed setup at the
reap, a timeout (of setup or of a perform) when its deadline passes, so that its
replacement is backed off at once; the reap of a timed-out worker counts nothing more.
A failed perform (forking strategy) is counted from the reading that shows the worker's
count rise, toward the intensity only: the worker lives on and backs off its own next
fork, so its slot has nothing to wait for. Retirements and clean exits cost nothing.
``counted`` tallies every failure by class, for the tests (INV-11).

The policy is an object the supervisor consults at fixed points (a worker failed, a
worker performed, may a slot be refilled, is the crash loop over the limit); later
policies (recycling, spare-worker scaling) plug in the same way, each in its own module.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import Counter
from dataclasses import dataclass, field

from prefork.core.effects import Log
from prefork.core.outcomes import Outcome
from prefork.core.settings import GroupConfig, PoolConfig

# what each class of failure costs: (it backs off its slot, it counts toward intensity)
COSTS: dict[Outcome, tuple[bool, bool]] = {
    Outcome.CRASHED: (True, True),
    Outcome.KILLED: (True, True),
    Outcome.SETUP_FAILED: (True, True),
    Outcome.TIMED_OUT: (True, True),
    Outcome.FORK_FAILED: (True, True),
    Outcome.PERFORM_FAILED: (False, True),
}
FAILURES = frozenset(COSTS)


def backoff_delay(failures: int, config: GroupConfig) -> float:
    """Delay before refilling a slot after its ``failures``-th failure in a row.

    The first is replaced at once; then ``restart_backoff``, doubling each time, capped at
    ``restart_backoff_max``.
    """
    if failures <= 1:
        return 0.0
    doublings = min(failures - 2, 64)  # past the cap anyway; 2 ** 1100 would overflow a float
    return min(config.restart_backoff_max, config.restart_backoff * 2**doublings)


@dataclass
class SlotHistory:
    """Failures of one slot in a row, and when it may be refilled."""

    failures: int = 0
    respawn_at: float = 0.0


@dataclass
class GroupBackoff:
    """The back-off of one group's slots."""

    slots: dict[int, SlotHistory] = field(default_factory=dict)

    def failed(self, slot: int, settings: GroupConfig, now: float,
               uptime: float | None) -> float:
        """Count a failure of ``slot``; return the delay before it may be refilled.

        ``uptime``: how long the worker had been ready (``None``: it never was)."""
        history = self.slots.setdefault(slot, SlotHistory())
        if uptime is not None and uptime >= settings.restart_backoff_max:  # it ran long enough
            history.failures = 0
        history.failures += 1
        delay = backoff_delay(history.failures, settings)
        history.respawn_at = now + delay
        return delay


class RestartIntensity:
    """At most ``max_restarts`` failures in ``restart_period`` seconds (``None``: no limit)."""

    def __init__(self, max_restarts: int | None, period: float) -> None:
        self.max_restarts = max_restarts
        self.period = period
        self.times: list[float] = []

    def record(self, now: float, count: int = 1) -> None:
        self.forget_before(now - self.period)
        self.times += [now] * count

    def exceeded(self, now: float) -> bool:
        if self.max_restarts is None:
            return False
        self.forget_before(now - self.period)
        return len(self.times) > self.max_restarts

    def forget_before(self, since: float) -> None:
        """Drop failures at or before ``since`` (the times are in order: the clock only
        moves forward), so that a long run with no limit keeps no endless list."""
        del self.times[:bisect_right(self.times, since)]


class RestartPolicy:
    """Back-off per group and intensity for the master, as one object."""

    def __init__(self, config: PoolConfig) -> None:
        self.groups: dict[str, GroupBackoff] = {}
        self.intensity = RestartIntensity(config.max_restarts, config.restart_period)
        self.counted: Counter[Outcome] = Counter()

    def reconfigure(self, config: PoolConfig) -> None:
        """A reload: groups the config drops forget their back-off; the limit may change."""
        kept = set(config.group_names)
        self.groups = {name: b for name, b in self.groups.items() if name in kept}
        self.intensity.max_restarts = config.max_restarts
        self.intensity.period = config.restart_period

    def history(self, group: str, slot: int) -> SlotHistory | None:
        backoff = self.groups.get(group)
        return None if backoff is None else backoff.slots.get(slot)

    def respawn_at(self, group: str, slot: int) -> float:
        """When the slot may be refilled (0: at once)."""
        history = self.history(group, slot)
        return history.respawn_at if history else 0.0

    def failed(self, outcome: Outcome, settings: GroupConfig, slot: int, now: float,
               uptime: float | None, count: int = 1) -> list[Log]:
        """Count ``count`` failures of one class; return what to log about the slot's
        back-off (nothing if none). ``uptime``: how long the worker had been ready
        (``None``: it never finished its setup, so it never ran long enough)."""
        assert outcome in FAILURES, f"{outcome} is not a failure"
        backs_off, intense = COSTS[outcome]
        self.counted[outcome] += count
        if intense:
            self.intensity.record(now, count)
        if not backs_off:
            return []
        backoff = self.groups.setdefault(settings.name, GroupBackoff())
        delay = backoff.failed(slot, settings, now, uptime)
        if delay <= 0:
            return []
        failures = backoff.slots[slot].failures
        return [Log("warning", f"slot {settings.name}.{slot} failed {failures} times in a "
                               f"row; respawn in {delay:g}s")]

    def worked(self, group: str, slot: int) -> None:
        """A live worker of the slot performed: the slot works, its run of failures ends."""
        backoff = self.groups.get(group)
        if backoff is not None:
            backoff.slots.pop(slot, None)

    def crash_loops(self) -> tuple[tuple[str, int, int], ...]:
        """``(group, slot, failures)`` for each slot that failed more than once in a row:
        one backed off, a crash loop until a worker of it performs (one failure alone is
        replaced at once, and is no loop)."""
        return tuple((group, slot, history.failures)
                     for group, backoff in self.groups.items()
                     for slot, history in sorted(backoff.slots.items())
                     if history.failures > 1)

    def exhausted(self, now: float) -> bool:
        """More failures in the period than ``max_restarts`` allows: time to give up."""
        return self.intensity.exceeded(now)
