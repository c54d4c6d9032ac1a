"""Spare-worker scaling: a pool's target follows how many of its workers are idle.

Apache's MinSpareServers/MaxSpareServers and uWSGI's cheaper mode, as one pure rule per
pool. A pool scales when ``min_spare`` or ``max_spare`` is set; otherwise its target is
the fixed ``workers`` and nothing here runs. The rule reads the pool's options, its
target, and how many of its live workers the latest scoreboard readings say are
performing (``busy``) and idle (``idle``), which the roster counts. Everything else is
arithmetic:

* **spare** = target - busy: the workers not performing, the ones being forked included
  (they will be idle soon), and a slot waiting out a crash back-off too (so that a crash
  loop is never mistaken for a shortage and grown into a bigger one). It decides growth.
* **surplus** = idle - ``max_spare``: only workers read idle, never one still in its
  setup (a slow setup is not idleness). It decides shrinking.
* **Grow** while spare < ``min_spare`` and the target is below ``max_workers``: add
  ``rate`` workers, at most once per ``scale_interval``; the rate starts at 1 and
  doubles for every interval the shortage lasts, up to ``SPAWN_RATE_CAP`` (Apache's 1,
  2, 4... 32), and is 1 again after an interval with no step. (The workers a step
  forks count as spare while they set up, so between two steps the shortage may seem
  over for a moment; only a whole interval without one ends it.) While some worker is not
  busy the demand is known (it is ``busy``), so a step adds no more than the shortage;
  while every worker is busy (*saturated*) the demand may be any larger, and a step adds
  the whole rate: a burst of load is met in a few intervals without a fork storm, at the
  price of an overshoot of less than the last step, which the shrink rule takes back.
* **Shrink** once a surplus has lasted ``idle_timeout``: the target drops by
  the smallest surplus seen over that time (the surplus that really lasted), never below
  ``min_workers``; the workers beyond the new target are stopped gracefully (QUIT: each
  finishes its perform). A new surplus must then last another ``idle_timeout``.

No oscillation: a shrink leaves spare >= idle >= ``max_spare`` >= ``min_spare`` (idle
<= spare always, and the config refuses ``min_spare > max_spare``), so no growth can
follow it while the demand holds. So under a constant demand of B busy workers (no
request, no crash) the target goes up, then down, and then holds: never down then up; the
first shrink comes at least ``idle_timeout`` after the last growth (the surplus must
last that long, and a growth ends any surplus), and shrinks are ``idle_timeout`` apart.
Only a saturated growth can overshoot (without one the target only ever moves one way);
it settles at a target with ``min_spare <= target - B`` and ``idle <= max_spare``, or at
a bound.

The rule needs the clock only while a decision is pending (a growth step waiting for its
interval, a surplus waiting for ``idle_timeout``); ``wake_at`` says when, and a settled
pool asks for nothing. How the master learns that workers became busy when nothing wakes
it is the adapter's business: while a pool scales, it reads the scoreboard every
``scale_interval`` (``posix.loop.scan_interval``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prefork.core.effects import Log
from prefork.core.settings import GroupConfig

SPAWN_RATE_CAP = 32
"""At most this many workers are added per ``scale_interval`` (Apache's cap)."""

# the master model (``master_machine.MasterModel``, which imports this module)
Master = Any


def scales(group: GroupConfig) -> bool:
    """Whether the pool scales by itself (``min_spare`` or ``max_spare`` is set)."""
    return group.min_spare is not None or group.max_spare is not None


def target_after_reload(group: GroupConfig, running: int | None) -> int:
    """A reload's target for ``group``: a pool that scales keeps the target it runs with
    (``running``), within its new bounds, so that a deploy under load has no capacity
    dip; a new pool, or one that does not scale, starts from its ``workers``."""
    if not scales(group) or running is None:
        return group.workers
    ceiling = running if group.max_workers is None else group.max_workers
    return max(group.min_workers, min(running, ceiling))


@dataclass
class Memory:
    """What the rule remembers of one pool between two events."""

    settings: GroupConfig | None = None  # the options it was last reviewed with
    rate: int = 1  # how many workers the next growth step may add
    grown_at: float | None = None  # when the last growth step was taken
    surplus_since: float | None = None  # when the current surplus began
    lasting_surplus: int | None = None  # the smallest surplus of the moments since then
    moment: float = 0.0  # the time of the latest reading of the surplus
    moment_surplus: int = 0  # the surplus at that moment, as its latest reading says
    wake_at: float | None = None  # when the pending decision is due (None: none is)


@dataclass(frozen=True)
class Decision:
    """The rule's answer: the pool's target, and why it changed (``None``: it did not)."""

    target: int
    why: str | None = None


def review(group: GroupConfig, memory: Memory, target: int, busy: int, idle: int,
           now: float) -> Decision:
    """Decide the pool's target from its readings (``busy``, ``idle``) at ``now``;
    ``memory`` is updated, its ``wake_at`` set to when the next decision is due (``None``:
    none is)."""
    memory.wake_at = None
    spare = max(0, target - busy)
    ceiling = target if group.max_workers is None else group.max_workers
    shortage = min((group.min_spare or 0) - spare, ceiling - target)
    if shortage > 0:
        memory.surplus_since = None
        saturated = busy >= target  # every worker busy: the demand may be any larger
        room = ceiling - target if saturated else shortage
        return _grow(group, memory, target, room, spare, now)
    surplus = 0 if group.max_spare is None else min(idle - group.max_spare,
                                                    target - group.min_workers)
    if surplus <= 0:
        memory.surplus_since = None
        return Decision(target)
    return _shrink(group, memory, target, surplus, now)


def _grow(group: GroupConfig, memory: Memory, target: int, room: int, spare: int,
          now: float) -> Decision:
    """``room``: how many workers this growth may add at most (the shortage, or while
    saturated everything up to ``max_workers``)."""
    interval = group.scale_interval
    if memory.grown_at is not None and now < memory.grown_at + interval:
        memory.wake_at = memory.grown_at + interval
        return Decision(target)
    if memory.grown_at is None or now >= memory.grown_at + 2 * interval:
        memory.rate = 1  # no step in the last interval: a new shortage
    step = min(memory.rate, room)
    memory.rate = min(memory.rate * 2, SPAWN_RATE_CAP)
    memory.grown_at = now
    if step < room:  # more may be needed: look again in an interval
        memory.wake_at = now + group.scale_interval
    return Decision(target + step, f"{spare} spare, min_spare {group.min_spare}")


def _shrink(group: GroupConfig, memory: Memory, target: int, surplus: int,
            now: float) -> Decision:
    """The readings of one scan arrive one by one at the same moment: only the last
    reading of a moment says what the surplus was then."""
    if memory.surplus_since is None:
        memory.surplus_since, memory.lasting_surplus = now, None
    elif now != memory.moment:  # the previous moment is over: keep its surplus
        memory.lasting_surplus = min(memory.lasting_surplus or memory.moment_surplus,
                                     memory.moment_surplus)
    memory.moment, memory.moment_surplus = now, surplus
    due = memory.surplus_since + group.idle_timeout
    if now < due:
        memory.wake_at = due
        return Decision(target)
    lasting = min(memory.lasting_surplus or surplus, surplus)
    memory.surplus_since = None
    return Decision(target - lasting, f"{lasting} idle beyond max_spare {group.max_spare} "
                                      f"for {group.idle_timeout:g}s")


class SpareScaling:
    """The master's part that carries out the ``spares_reviewed`` rows: each scaling
    pool's target, reviewed after every event while the master runs or reloads."""

    CALLBACKS = ("rescale", "rest_scaling")

    def __init__(self, master: Master) -> None:
        self.master = master
        self.memories: dict[str, Memory] = {}

    def rescale(self, *_: Any) -> None:
        """Review every scaling pool; set the targets that change (the derived rules
        then fork or retire)."""
        master = self.master
        roster, now = master.roster, master.context.now
        for group in master.config.groups:
            target = roster.targets.get(group.name)
            if not scales(group) or target is None:
                self.memories.pop(group.name, None)
                continue
            memory = self.memories.get(group.name)
            if memory is None or memory.settings is not group:  # new options: start afresh
                memory = self.memories[group.name] = Memory(settings=group)
            decision = review(group, memory, target, roster.busy(group.name),
                              roster.idle(group.name), now)
            if decision.why is not None and decision.target != target:
                master.context.emit(Log(
                    "info", f"pool {group.name}: {target} -> {decision.target} workers "
                            f"({decision.why})",
                    (("event", "rescaled"), ("pool", group.name), ("from", target),
                     ("to", decision.target), ("busy", roster.busy(group.name)),
                     ("idle", roster.idle(group.name)))))
                roster.set_target(group.name, decision.target)

    def wanted(self) -> bool:
        """Whether the review has anything to do: some pool scales, or the rule still
        remembers something. Without, the supervisor does not fire the row (a fired
        trigger costs what the rest of a small event costs)."""
        return bool(self.memories) or any(scales(g) for g in self.master.config.groups)

    def rest_scaling(self, *_: Any) -> None:
        """Not running: nothing is pending; the review starts afresh when it runs again."""
        self.memories.clear()

    def wake_at(self) -> float | None:
        """The earliest pending decision of any pool (``None``: every pool is settled)."""
        times = [m.wake_at for m in self.memories.values() if m.wake_at is not None]
        return min(times, default=None)
