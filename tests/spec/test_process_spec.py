"""specs/process.md and the worker process's machine say the same thing, both ways.

Like the master's and the worker's specs (``test_spec_tables``, ``test_spec_product``,
``test_spec_scenarios``), for the machine that runs inside each worker process
(``PROCESS_TRANSITIONS``): every spec row is a code row and every code row a spec row;
the states are the ``Enum`` and the events the triggers; every pair of state and event,
under every valuation of the guards that a path can reach, gives the spec row's
destination and effects, or ``ProcessMachineError`` with the state unchanged; and every
scenario runs against the pure machine. The ids point at the lines of specs/process.md.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from process_spec import (
    ProcessRow,
    ProcessScenarioFailure,
    canonical_args,
    column_item,
    doc,
    guard_valuations,
    process_in,
    process_rows,
    run_scenario,
)
from spec_tables import SPECS, Shape, code_shapes, guard_text
from specparse import Scenario, SpecSyntaxError

from prefork.child.process_machine import (
    PROCESS_TRANSITIONS,
    PROCESS_TRIGGERS,
    ProcessMachineError,
    ProcessState,
)

CODE = code_shapes(PROCESS_TRANSITIONS)
ROWS = process_rows()


# both ways ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "row", ROWS, ids=[f"{r.row.where.removeprefix('specs/')} {r.shape}" for r in ROWS]
)
def test_every_spec_row_is_a_code_row(row: ProcessRow) -> None:
    code, spec = Counter(CODE), Counter(r.shape for r in ROWS)
    assert code[row.shape] >= 1, (
        f"{row.row.where}: no row of PROCESS_TRANSITIONS is {row.shape}; its rows for "
        f"{row.shape.trigger}:\n"
        + "\n".join(f"    {s}" for s in CODE if s.trigger == row.shape.trigger)
    )
    assert spec[row.shape] == code[row.shape], f"{row.row.where}: {row.shape} counted twice"


@pytest.mark.parametrize(
    ("index", "shape"), list(enumerate(CODE)),
    ids=[f"process[{i}] {s}" for i, s in enumerate(CODE)],
)
def test_every_code_row_is_a_spec_row(index: int, shape: Shape) -> None:
    assert any(r.shape == shape for r in ROWS), (
        f"PROCESS_TRANSITIONS[{index}] ({shape}) has no row in specs/process.md; its rows "
        "for that event:\n"
        + "\n".join(f"    {r.row.where}: {r.shape}" for r in ROWS
                    if r.shape.trigger == shape.trigger)
    )


def test_states_are_the_enum() -> None:
    assert [row["state"] for row in doc().table("States").rows] == [
        state.value for state in ProcessState
    ]


def test_terminal_states_are_the_ones_no_row_leaves() -> None:
    left = {state for row in ROWS for state in row.shape.sources}
    for row in doc().table("States").rows:
        terminal = row["terminal"].lower() in ("yes", "y", "true")
        assert terminal == (row["state"] not in left), f"{row.where}: terminal={terminal}?"


def test_events_are_the_triggers() -> None:
    names = [row["event"] for row in doc().table("Events").rows]
    assert len(names) == len(set(names)), f"an event is listed twice: {names}"
    assert set(names) == set(PROCESS_TRIGGERS)


def test_no_two_rows_can_match_the_same_firing() -> None:
    for index, first in enumerate(ROWS):
        for second in ROWS[index + 1:]:
            if first.shape.trigger != second.shape.trigger:
                continue
            shared = first.shape.sources & second.shape.sources
            clash = any((name, not wanted) in second.shape.guard
                        for name, wanted in first.shape.guard)
            assert not shared or clash, (
                f"{first.row.where} and {second.row.where} both match "
                f"{first.shape.trigger} in {sorted(shared)}"
                f"{guard_text(first.shape.guard | second.shape.guard)}"
            )


# the whole product -------------------------------------------------------------------


def product_cases() -> list[Any]:
    cases = []
    for state in ProcessState:
        for valuation in guard_valuations():
            if process_in(state, valuation) is None:
                continue  # e.g. performing with the forking strategy: no path leads there
            guards = "".join(f" {name}" for name, on in valuation.items() if on)
            for trigger in PROCESS_TRIGGERS:
                cases.append(pytest.param(
                    state, trigger, valuation, id=f"{state} {trigger}{guards}"
                ))
    return cases


@pytest.mark.parametrize(("state", "trigger", "valuation"), product_cases())
def test_every_state_and_event_does_what_the_spec_says(
    state: ProcessState, trigger: str, valuation: dict[str, bool]
) -> None:
    model = process_in(state, valuation)
    assert model is not None
    rows = [r for r in ROWS if r.shape.trigger == trigger and r.allows(state.value, valuation)]
    args = canonical_args(trigger, valuation)
    if not rows:
        with pytest.raises(ProcessMachineError) as raised:
            model.fire(trigger, *args)
        assert f"no row for {trigger} in state {state}" in str(raised.value)
        assert model.state is state, "a refused trigger leaves the state as it was"
        return
    (row,) = rows
    effects = model.fire(trigger, *args)
    wanted = state.value if row.shape.dest == "=" else row.shape.dest
    assert model.state.value == wanted, f"{row.row.where}: went to {model.state}"
    assert tuple(column_item(e) for e in effects) == row.effects, (
        f"{row.row.where}: the effects were {effects}"
    )


# scenarios ---------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", doc().scenarios, ids=lambda s: s.test_id)
def test_scenario(scenario: Scenario) -> None:
    try:
        run_scenario(scenario)
    except (ProcessScenarioFailure, SpecSyntaxError) as failure:
        pytest.fail(str(failure), pytrace=False)


def test_scenario_names_are_unique() -> None:
    names = [s.name for s in doc().scenarios]
    assert len(names) == len(set(names))


def test_every_event_appears_in_a_scenario() -> None:
    """The scenarios walk the whole machine: each trigger is fired by some ``when``."""
    fired = {step.text.split("(")[0].strip() for s in doc().scenarios for step in s.steps
             if step.keyword == "when"}
    assert set(PROCESS_TRIGGERS) <= fired, sorted(set(PROCESS_TRIGGERS) - fired)


def test_the_diagram_names_every_state() -> None:
    text = (SPECS.parent / "docs" / "machines.md").read_text()
    assert "## Worker process" in text
    for state in ProcessState:
        assert f'state "{state.value}"' in text
