"""A worker's state-change line: the event it is filed under, and its level."""

from __future__ import annotations

from core_driver import bare_roster, working

from prefork.core import Log


def test_a_state_changes_line_says_ready_replaced_or_transition() -> None:
    """The ``event`` field sorts the lines: a worker ready after its setup, a worker
    stopped because another replaces it (a reload's new generation, or a recycled
    worker's successor), and every other change."""
    roster, config, context = bare_roster(a=3)

    def events() -> list[tuple[str, str]]:
        return [(dict(e.fields)["event"], e.message.split(" ", 4)[4]) for e in context.take()
                if isinstance(e, Log) and dict(e.fields)["event"] != "spawned"]

    first = working(roster, config, "a", 0, 40)
    assert events() == [("ready", "spawning -> idle (reported_idle)")]
    roster.change(first, "reported_performing", 1.0, 1)
    assert events() == [("transition", "idle -> performing (reported_performing)")]
    roster.change(first, "recycle_requested", "max_performs", None)
    context.take()
    roster.change(first, "stop_requested")
    assert events() == [("replaced", "retiring -> stopping (stop_requested)")]
    second = working(roster, config, "a", 1, 41)
    context.take()
    roster.change(second, "stop_requested")  # a smaller target: no successor
    assert events() == [("transition", "idle -> stopping (stop_requested)")]
    third = working(roster, config, "a", 2, 42)
    roster.new_generation()  # a reload: the old generation is replaced
    context.take()
    roster.change(third, "stop_requested")
    assert events() == [("replaced", "idle -> stopping (stop_requested)")]
    roster.change(third, "exited", 0, 1)
    assert [event for event, _ in events()] == ["transition", "exited"]


def test_a_sampled_change_is_at_debug_and_the_others_at_info() -> None:
    roster, config, context = bare_roster(a=1)
    worker = working(roster, config, "a", 0, 40)
    context.take()
    roster.change(worker, "reported_performing", 1.0, 1)
    roster.change(worker, "reported_idle", 2.0, 1)
    roster.change(worker, "stop_requested")
    assert [(e.level, e.message.split(" ", 4)[4]) for e in context.take()
            if isinstance(e, Log)] == [
        ("debug", "idle -> performing (reported_performing)"),
        ("debug", "performing -> idle (reported_idle)"),
        ("info", "idle -> stopping (stop_requested)")]
