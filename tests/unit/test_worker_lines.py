"""A worker's state-change line: the event it is filed under, and its level."""

from __future__ import annotations

from prefork.core import Log, PoolConfig
from prefork.core.context import MachineContext
from prefork.core.roster import Roster


def _roster(**groups: int) -> tuple[Roster, PoolConfig, MachineContext]:
    context = MachineContext()
    config = PoolConfig.of(groups=groups, setup_timeout=None)
    return Roster(config, context, lambda group, slot: 0.0), config, context


def _working(roster: Roster, config: PoolConfig, group: str, slot: int, pid: int):
    worker = roster.enlist(config.group(group), slot)
    roster.change(worker, "forked", pid)
    roster.change(worker, "reported_idle", 0.0, 0)
    return worker


def test_a_state_changes_line_says_ready_replaced_or_transition() -> None:
    """The ``event`` field sorts the lines: a worker ready after its setup, a worker
    stopped because another replaces it (a reload's new generation, or a recycled
    worker's successor), and every other change."""
    roster, config, context = _roster(a=3)

    def events() -> list[tuple[str, str]]:
        return [(dict(e.fields)["event"], e.message.split(" ", 4)[4]) for e in context.take()
                if isinstance(e, Log) and dict(e.fields)["event"] != "spawned"]

    first = _working(roster, config, "a", 0, 40)
    assert events() == [("ready", "spawning -> idle (reported_idle)")]
    roster.change(first, "reported_performing", 1.0, 1)
    assert events() == [("transition", "idle -> performing (reported_performing)")]
    roster.change(first, "recycle_requested", "max_performs", None)
    context.take()
    roster.change(first, "stop_requested")
    assert events() == [("replaced", "retiring -> stopping (stop_requested)")]
    second = _working(roster, config, "a", 1, 41)
    context.take()
    roster.change(second, "stop_requested")  # a smaller target: no successor
    assert events() == [("transition", "idle -> stopping (stop_requested)")]
    third = _working(roster, config, "a", 2, 42)
    roster.new_generation()  # a reload: the old generation is replaced
    context.take()
    roster.change(third, "stop_requested")
    assert events() == [("replaced", "idle -> stopping (stop_requested)")]
    roster.change(third, "exited", 0, 1)
    assert [event for event, _ in events()] == ["transition", "exited"]


def test_a_sampled_change_is_at_debug_and_the_others_at_info() -> None:
    roster, config, context = _roster(a=1)
    worker = _working(roster, config, "a", 0, 40)
    context.take()
    roster.change(worker, "reported_performing", 1.0, 1)
    roster.change(worker, "reported_idle", 2.0, 1)
    roster.change(worker, "stop_requested")
    assert [(e.level, e.message.split(" ", 4)[4]) for e in context.take()
            if isinstance(e, Log)] == [
        ("debug", "idle -> performing (reported_performing)"),
        ("debug", "performing -> idle (reported_idle)"),
        ("info", "idle -> stopping (stop_requested)")]
