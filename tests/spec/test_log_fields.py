"""The core's log lines carry the fields docs/guide.md lists, and say what their words say.

The spec runner checks every line of every scenario (``log_fields.problems``); these
tests make sure the check has something to bite on: the table is read, every event the
core writes is in some scenario, and a line with its fields gone wrong is caught.
"""

from __future__ import annotations

import log_fields
import pytest
from spec_runner import run_scenario
from test_spec_scenarios import scenario_cases

from prefork.core import Log

WORKER = (("pool", "default"), ("slot", 0), ("worker_pid", 101))
LABEL = "group=default slot=0 pid=101"


def test_the_guide_lists_the_events() -> None:
    assert log_fields.EVENTS["killed"] == ("pool", "slot", "worker_pid", "reason")
    assert log_fields.EVENTS["stopped"] == ("exit_code",)
    assert len(log_fields.EVENTS) >= 15


def test_every_event_of_the_core_is_written_in_some_scenario() -> None:
    for case in scenario_cases():
        run_scenario(case.values[0])
    unseen = set(log_fields.EVENTS) - log_fields.NOT_FROM_THE_CORE - log_fields.SEEN
    assert not unseen, f"no scenario makes the core write these events: {sorted(unseen)}"


@pytest.mark.parametrize("line", [
    Log("info", f"worker {LABEL} spawned", None),  # type: ignore[arg-type]
    Log("info", f"worker {LABEL} spawned", (("what", "spawned"), *WORKER)),
    Log("info", f"worker {LABEL} spawned", (("event", "born"), *WORKER)),
    Log("info", f"worker {LABEL} spawned", (("event", "spawned"), *WORKER[:2])),
    Log("info", "worker group=default slot=1 pid=101 spawned", (("event", "spawned"), *WORKER)),
    Log("warning", f"worker {LABEL} did not stop in time; KILL",
        (("event", "killed"), *WORKER, ("reason", "impatience"))),
    Log("info", "master running -> draining (quit)",
        (("event", "master"), ("from", "running"), ("to", "stopped"), ("trigger", "quit"))),
    Log("info", "group default: 3 -> 2 workers",
        (("event", "scaled"), ("pool", "default"), ("from", 3), ("to", 1))),
    Log("error", f"worker {LABEL} crashed (exit status 1)",
        (("event", "exited"), *WORKER, ("outcome", "crashed"), ("status", 1),
         ("performs", 4), ("perform", 4), ("reason", None))),
    Log("info", "master draining -> stopped (workers_gone)",
        (("event", "stopped"), ("exit_code", "0"))),
], ids=["none", "no-event", "unknown", "missing", "other-worker", "reason", "master",
        "scaled", "exited", "stopped"])
def test_a_line_with_its_fields_gone_wrong_is_caught(line: Log) -> None:
    assert log_fields.problems(line)


def test_a_good_line_passes() -> None:
    line = Log("error", f"worker {LABEL} crashed (exit status 1)",
               (("event", "exited"), *WORKER, ("outcome", "crashed"), ("status", 1),
                ("performs", 4), ("perform", 5), ("reason", None)))
    assert log_fields.problems(line) == []
