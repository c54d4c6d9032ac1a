"""The tables of specs/ and the tables of the code say the same thing, both ways.

The code keeps its own tables (``WORKER_TRANSITIONS``, ``MASTER_TRANSITIONS``) and never
reads Markdown; the spec is an independent oracle. Each spec row must be a code row and
each code row a spec row (compared as trigger, set of sources, destination and guard), the
states must be the ``Enum`` values and the events the triggers. One test per row, so a
failure names the row: ``specs/master.md:123`` or the index of the code's dict.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from enum import Enum
from typing import Any

import pytest
from spec_tables import Shape, SpecRow, code_shapes, guard_text, load, spec_rows

from prefork.core import (
    MASTER_TRANSITIONS,
    MASTER_TRIGGERS,
    WORKER_TRANSITIONS,
    WORKER_TRIGGERS,
    MasterState,
    WorkerState,
)

INVARIANT_NAMES = {
    1: "convergence",
    2: "graceful means graceful",
    3: "the master stops last",
    4: "no stray signals",
    5: "no spawning while leaving",
    6: "bounded crash loops",
    7: "bounds",
    8: "determinism",
    9: "bounded stops",
    10: "no capacity dip",
    11: "failures are counted once",
}


@dataclass(frozen=True)
class Machine:
    """One machine as both sides describe it."""

    name: str
    spec: str
    states: type[Enum]
    transitions: list[dict[str, Any]]
    triggers: tuple[str, ...]

    def rows(self) -> list[SpecRow]:
        return spec_rows(load(self.spec), (s.value for s in self.states), self.triggers)

    def code(self) -> list[Shape]:
        return code_shapes(self.transitions)


MACHINES = [
    Machine("worker", "worker.md", WorkerState, WORKER_TRANSITIONS, WORKER_TRIGGERS),
    Machine("master", "master.md", MasterState, MASTER_TRANSITIONS, MASTER_TRIGGERS),
]


def spec_row_cases() -> list[Any]:
    return [
        pytest.param(machine, row, id=f"{row.row.where.removeprefix('specs/')} {row.shape}")
        for machine in MACHINES for row in machine.rows()
    ]


def code_row_cases() -> list[Any]:
    return [
        pytest.param(machine, index, shape, id=f"{machine.name}[{index}] {shape}")
        for machine in MACHINES for index, shape in enumerate(machine.code())
    ]


@pytest.mark.parametrize(("machine", "row"), spec_row_cases())
def test_every_spec_row_is_a_code_row(machine: Machine, row: SpecRow) -> None:
    code = Counter(machine.code())
    spec = Counter(r.shape for r in machine.rows())
    assert code[row.shape] >= 1, (
        f"{row.row.where}: no row of {machine.name}'s code table is {row.shape}; the code's "
        f"rows for {row.shape.trigger}:\n"
        + "\n".join(f"    {s}" for s in machine.code() if s.trigger == row.shape.trigger)
    )
    assert spec[row.shape] == code[row.shape], (
        f"{row.row.where}: {row.shape} is {spec[row.shape]} spec rows but "
        f"{code[row.shape]} code rows"
    )


@pytest.mark.parametrize(("machine", "index", "shape"), code_row_cases())
def test_every_code_row_is_a_spec_row(machine: Machine, index: int, shape: Shape) -> None:
    rows = [r for r in machine.rows() if r.shape == shape]
    assert rows, (
        f"{machine.name}'s code row {index} ({shape}) has no row in specs/{machine.spec}; "
        "its rows for that event:\n"
        + "\n".join(f"    {r.row.where}: {r.shape}" for r in machine.rows()
                    if r.shape.trigger == shape.trigger)
    )


@pytest.mark.parametrize("machine", MACHINES, ids=lambda m: m.name)
def test_states_are_the_enum(machine: Machine) -> None:
    table = load(machine.spec).table("States")
    assert [row["state"] for row in table.rows] == [s.value for s in machine.states]


@pytest.mark.parametrize("machine", MACHINES, ids=lambda m: m.name)
def test_terminal_states_are_the_ones_no_row_leaves(machine: Machine) -> None:
    table = load(machine.spec).table("States")
    left = {state for row in machine.rows() for state in row.shape.sources}
    for row in table.rows:
        terminal = row["terminal"].lower() in ("yes", "y", "true")
        assert terminal == (row["state"] not in left), (
            f"{row.where}: {row['state']} is marked terminal={terminal}, but "
            f"{'no' if row['state'] not in left else 'some'} transition row leaves it"
        )


@pytest.mark.parametrize("machine", MACHINES, ids=lambda m: m.name)
def test_events_are_the_triggers(machine: Machine) -> None:
    table = load(machine.spec).table("Events")
    names = [row["event"] for row in table.rows]
    assert len(names) == len(set(names)), f"an event is listed twice: {names}"
    assert set(names) == set(machine.triggers), (
        f"specs/{machine.spec} lists events the code lacks: "
        f"{sorted(set(names) - set(machine.triggers))}; the code has triggers the spec "
        f"lacks: {sorted(set(machine.triggers) - set(names))}"
    )


@pytest.mark.parametrize("machine", MACHINES, ids=lambda m: m.name)
def test_no_two_rows_can_match_the_same_firing(machine: Machine) -> None:
    """A (state, trigger, guard values) triple has at most one row: the table decides."""
    rows = machine.rows()
    for index, first in enumerate(rows):
        for second in rows[index + 1:]:
            if first.shape.trigger != second.shape.trigger:
                continue
            shared = first.shape.sources & second.shape.sources
            clash = any(
                (name, not wanted) in second.shape.guard for name, wanted in first.shape.guard
            )
            assert not shared or clash, (
                f"{first.row.where} and {second.row.where} both match "
                f"{first.shape.trigger} in {sorted(shared)}"
                f"{guard_text(first.shape.guard | second.shape.guard)}"
            )


def test_invariants_are_designs() -> None:
    """DESIGN's invariants as the property tests check them."""
    invariants = load("master.md").invariants
    found = {inv.number: inv.name for inv in invariants}
    assert len(found) == len(invariants), "an invariant number is used twice"
    assert found == INVARIANT_NAMES
    for inv in invariants:
        assert inv.statement, f"{inv.source}:{inv.line}: INV-{inv.number} has no statement"
    assert not load("worker.md").invariants, "invariants live in specs/master.md"
