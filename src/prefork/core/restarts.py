"""The restart policy: how long a slot waits before it is refilled, and when to give up.

Two rules, both pure arithmetic over the failures they are told about:

* **Back-off**, per group and per slot. The first failure of a slot is replaced at once
  (a worker killed by an operator comes straight back); each further failure in a row
  waits ``restart_backoff``, doubling, capped at ``restart_backoff_max`` (the group's own
  options). A run of failures ends when a live worker of the slot is seen to have
  performed, or when a worker that failed had been ready (since its first reading of
  idle or performing) at least ``restart_backoff_max``. A worker that never finished its
  setup never ran long enough, however long it hung in it.
* **Intensity**, per group (OTP-style): more than the group's ``max_restarts`` failures
  within its ``restart_period`` seconds, and the master gives up. A failure of a worker
  whose group a reload dropped counts toward no group's intensity: its pool is gone.

A crash loop is made visible: ``crash_loop(group, now)`` says it in a line, "pool mail:
5 crashes in 10s, next start in 8s" (the failures within the group's ``restart_period``,
and when its first slot waiting out a back-off may be refilled), which the back-off's log
line and the pool's view in a ``Snapshot`` carry.

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
    """Back-off per group and slot, and the intensity per group, as one object."""

    def __init__(self, config: PoolConfig) -> None:
        self.groups: dict[str, GroupBackoff] = {}
        self.intensities: dict[str, RestartIntensity] = {}
        self.counted: Counter[Outcome] = Counter()
        self.reconfigure(config)

    def reconfigure(self, config: PoolConfig) -> None:
        """A reload: groups the config drops forget their back-off and their failures;
        the groups kept keep their failures under their new limit."""
        kept = set(config.group_names)
        self.groups = {name: b for name, b in self.groups.items() if name in kept}
        intensities = {}
        for group in config.groups:
            intensity = self.intensities.get(group.name) or RestartIntensity(
                group.max_restarts, group.restart_period)
            intensity.max_restarts, intensity.period = group.max_restarts, group.restart_period
            intensities[group.name] = intensity
        self.intensities = intensities

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
        intensity = self.intensities.get(settings.name)
        if intense and intensity is not None:
            intensity.record(now, count)
        if not backs_off:
            return []
        backoff = self.groups.setdefault(settings.name, GroupBackoff())
        delay = backoff.failed(slot, settings, now, uptime)
        if delay <= 0:
            return []
        failures = backoff.slots[slot].failures
        note = self.crash_loop(settings.name, now)
        return [Log("warning", f"{note} (slot {settings.name}.{slot} failed {failures} "
                               f"times in a row)",
                    (("event", "backoff"), ("pool", settings.name), ("slot", slot),
                     ("failures", failures), ("delay", delay)))]

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
        """Some group failed more often in its period than its ``max_restarts`` allows:
        time to give up."""
        return self.exhausted_group(now) is not None

    def exhausted_group(self, now: float) -> str | None:
        """The first group (in config order) past its restart intensity, if any."""
        for name, intensity in self.intensities.items():
            if intensity.exceeded(now):
                return name
        return None

    def crashes_within_period(self, group: str, now: float) -> int:
        """The group's failures within its ``restart_period`` up to ``now``."""
        intensity = self.intensities.get(group)
        if intensity is None:
            return 0
        intensity.forget_before(now - intensity.period)
        return len(intensity.times)

    def next_start(self, group: str, now: float) -> float | None:
        """When the first of the group's backed-off slots may be refilled (``None``: no
        slot waits). A slot that is not vacant may still be listed: its time is past or
        its live worker will end the run; callers ask while the group is short."""
        backoff = self.groups.get(group)
        if backoff is None:
            return None
        return min((h.respawn_at for h in backoff.slots.values() if h.respawn_at > now),
                   default=None)

    def crash_loop(self, group: str, now: float) -> str | None:
        """The group's crash loop in a line: ``pool mail: 5 crashes in 10s, next start in
        8s`` (``None``: no failure within its period and no slot waiting)."""
        crashes = self.crashes_within_period(group, now)
        start = self.next_start(group, now)
        parts = []
        if crashes:
            period = self.intensities[group].period
            parts.append(f"{crashes} crash{'' if crashes == 1 else 'es'} in {period:g}s")
        if start is not None:
            parts.append(f"next start in {_seconds(start - now)}s")
        return f"pool {group}: {', '.join(parts)}" if parts else None


def _seconds(delay: float) -> str:
    """A wait in a line: three significant digits (a status read between two events asks
    mid-wait, ``2.05``, not ``2.05295``), whole seconds from 100 on."""
    return f"{delay:.0f}" if delay >= 100 else f"{delay:.3g}"
