"""specs/process.md, read and played against the worker process's pure machine.

The worker process's machine has its own effects (``MarkIdle``, ``ExitWith``...) and no
supervisor, so its spec has its own effects column and scenario steps (both described in
specs/process.md); the rest of the grammar (tables, guards, ``=``, scenario blocks) is
specs/README.md's, read by the same ``specparse``/``spec_tables`` helpers.

Everything here runs without a process: a fresh ``WorkerProcess`` of a fresh machine per
scenario or case, triggers in, effects out.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from spec_runner import parse_value, split_args
from spec_tables import STAYS, Shape, load, parse_guard
from specparse import Row, Scenario, SpecDoc, SpecSyntaxError, Step

from prefork.child.process_machine import (
    EXIT_PERFORM_RAISED,
    PROCESS_TRIGGERS,
    AskForReplacement,
    BackOff,
    CountFailure,
    ExitWith,
    LogFailure,
    LogLine,
    MarkIdle,
    NotifyMaster,
    ProcessEffect,
    ProcessMachineError,
    ProcessState,
    ReopenLogFiles,
    SetStopping,
    StartDeadline,
    WorkerProcess,
    new_process_machine,
)

SPEC = "process.md"
LABEL = "worker group=default slot=0 pid=101"
MASTER_PID = 100
NONE_MARKS = ("", "—", "-", "none")
EFFECT_TYPES: dict[str, type[ProcessEffect]] = {
    cls.__name__: cls
    for cls in (MarkIdle, NotifyMaster, ReopenLogFiles, SetStopping, StartDeadline, LogLine,
                LogFailure, CountFailure, BackOff, ExitWith, AskForReplacement)
}
# the effects column: a name, with the fields that depend neither on the worker's label
# nor on the run of failures
COLUMN_ITEM = re.compile(
    r"^(MarkIdle|NotifyMaster|ReopenLogFiles|SetStopping|StartDeadline|LogFailure|"
    r"AskForReplacement|"
    r"CountFailure|BackOff|LogLine\((debug|info|warning|error)\)|ExitWith\(\d+\))$"
)
CALL = re.compile(r"^(\w+)\s*(?:\((.*)\))?$")
# canonical arguments of the triggers that carry fields (the product test's)
CANONICAL_ARGS: dict[str, tuple[Any, ...]] = {
    "setup_failed": ("setup",),
    "perform_child_failed": (4242, 1),
    "recycle_due": ("max_performs", "did 10 performs (max_performs 10)"),
}
# the guards that read the event's fields, not the model: the arguments that make them true
ARGS_WHEN: dict[str, tuple[str, tuple[Any, ...]]] = {
    "logged_by_child": ("perform_child_failed", (4242, EXIT_PERFORM_RAISED)),
}


def canonical_args(trigger: str, valuation: dict[str, bool]) -> tuple[Any, ...]:
    """The arguments to fire ``trigger`` with, so that its guards are as ``valuation``."""
    for guard, (guarded, args) in ARGS_WHEN.items():
        if guarded == trigger and valuation.get(guard):
            return args
    return CANONICAL_ARGS.get(trigger, ())
# the ordinary way to each state, from setting_up
PATHS: dict[ProcessState, tuple[str, ...]] = {
    ProcessState.SETTING_UP: (),
    ProcessState.IDLE: ("setup_finished",),
    ProcessState.PERFORMING: ("setup_finished", "batch_started"),
    ProcessState.WAITING: ("setup_finished", "batch_started"),
    ProcessState.HOLDING: ("setup_finished", "hold_requested"),
    ProcessState.STOPPING: ("setup_finished", "stop_requested"),
    ProcessState.EXITED: ("setup_finished", "stop_requested", "teardown_finished"),
}


class ProcessScenarioFailure(AssertionError):
    """A ``then`` that does not hold; the message names the spec's file and line."""

    def __init__(self, step: Step, why: str) -> None:
        super().__init__(f"{step.where}: {step}\n    {why}")


def doc() -> SpecDoc:
    return load(SPEC)


# the transitions table -----------------------------------------------------------------


@dataclass(frozen=True)
class ProcessRow:
    """A row of process.md's ``## Transitions``: its shape and its effects, in order."""

    row: Row
    shape: Shape
    effects: tuple[str, ...]

    def allows(self, state: str, valuation: dict[str, bool]) -> bool:
        return state in self.shape.sources and all(
            valuation.get(name, False) is wanted for name, wanted in self.shape.guard
        )


def parse_effects(cell: str, where: str) -> tuple[str, ...]:
    """process.md's effects column: a comma-separated list, or ``—``."""
    if cell.strip() in NONE_MARKS:
        return ()
    items = tuple(part.strip() for part in cell.split(","))
    for item in items:
        if not COLUMN_ITEM.match(item):
            source, _, line = where.rpartition(":")
            raise SpecSyntaxError(source, int(line), f"not an effect of process.md: {item!r}")
    return items


def process_rows() -> list[ProcessRow]:
    """The rows of process.md's table, checked against the names it may use."""
    states = {state.value for state in ProcessState}
    rows = []
    for row in doc().table("Transitions").rows:
        sources = frozenset(part.strip() for part in row["from"].split(","))
        dest = row["to"].strip()
        unknown = (sources | ({dest} - {STAYS})) - states
        if unknown:
            raise SpecSyntaxError(row.source, row.line, f"unknown states {sorted(unknown)}")
        if row["event"] not in PROCESS_TRIGGERS:
            raise SpecSyntaxError(row.source, row.line, f"unknown event {row['event']!r}")
        shape = Shape(row["event"], sources, dest, parse_guard(row["guard"], row.where))
        rows.append(ProcessRow(row, shape, parse_effects(row["effects"], row.where)))
    return rows


def column_item(effect: ProcessEffect) -> str:
    """How the effects column writes ``effect``: the name, and the label-free fields."""
    match effect:
        case LogLine(level, _):
            return f"LogLine({level})"
        case ExitWith(code):
            return f"ExitWith({code})"
        case BackOff():
            return "BackOff"
        case _:
            return type(effect).__name__


# the pure machine, in a chosen state -----------------------------------------------------


def new_process(forking: bool = False) -> WorkerProcess:
    """A fresh worker process model in ``setting_up``, on a machine of its own."""
    model = WorkerProcess(LABEL, MASTER_PID, forking)
    new_process_machine().add_model(model)
    return model


def bring_to(model: WorkerProcess, state: ProcessState) -> None:
    """Fire the ordinary path from ``setting_up`` to ``state``; its effects are dropped."""
    for trigger in PATHS[state]:
        model.fire(trigger)


def guard_valuations() -> Iterator[dict[str, bool]]:
    """Every valuation of the table's guards: the strategy, the master's death, and
    whether a failed perform child logged its own traceback (its status)."""
    for forks in (False, True):
        for gone in (False, True):
            for logged in (False, True):
                yield {"forks_performs": forks, "master_known_gone": gone,
                       "logged_by_child": logged}


def process_in(state: ProcessState, valuation: dict[str, bool]) -> WorkerProcess | None:
    """A model in ``state`` with its guards valued so; None when no path gets there."""
    model = new_process(forking=valuation["forks_performs"])
    if valuation["master_known_gone"]:
        model.fire("master_lost")
    bring_to(model, state)
    return model if model.state is state else None


# scenarios -------------------------------------------------------------------------------


@dataclass
class Played:
    """What the latest ``when`` did."""

    effects: list[ProcessEffect] = dataclasses.field(default_factory=list)
    error: ProcessMachineError | None = None


def parse_call(text: str, step: Step) -> tuple[str, list[Any]]:
    match = CALL.match(text.strip())
    if not match:
        raise SpecSyntaxError(step.source, step.line, f"not NAME or NAME(args): {text!r}")
    name, args = match.group(1), match.group(2)
    return name, [parse_value(arg) for arg in split_args(args or "")]


def effect_matches(pattern: tuple[str, list[Any]], effect: ProcessEffect) -> bool:
    """A pattern is a name and leading fields; a text field matches by containment."""
    name, wanted = pattern
    if type(effect).__name__ != name:
        return False
    fields = [getattr(effect, f.name) for f in dataclasses.fields(effect)]
    for want, have in zip(wanted, fields, strict=False):
        if isinstance(have, str) and isinstance(want, str):
            if want not in have:
                return False
        elif want != have:
            return False
    return True


def parse_patterns(text: str, step: Step) -> list[tuple[str, list[Any]]]:
    patterns = [parse_call(part, step) for part in split_args(text)]
    for name, _ in patterns:
        if name not in EFFECT_TYPES:
            raise SpecSyntaxError(step.source, step.line, f"not an effect: {name!r}")
    return patterns


def run_scenario(scenario: Scenario) -> None:
    """Play one scenario of process.md; raise ``ProcessScenarioFailure`` where it fails."""
    forking = False
    model: WorkerProcess | None = None
    played: Played | None = None
    for step in scenario.steps:
        if step.keyword == "given":
            if step.text.startswith("strategy "):
                forking = step.text.split()[1] == "forking"
                continue
            model = model or new_process(forking)
            words = step.text.split()
            if words[:1] != ["process"] or len(words) != 2:
                raise SpecSyntaxError(step.source, step.line, f"unknown given: {step.text!r}")
            bring_to(model, ProcessState(words[1]))
        elif step.keyword == "when":
            if played is not None and played.error is not None:
                raise SpecSyntaxError(step.source, step.line, "a 'when' after an error")
            model = model or new_process(forking)
            played = play(model, step)
        else:
            model = model or new_process(forking)
            check(model, played, step)


def play(model: WorkerProcess, step: Step) -> Played:
    trigger, args = parse_call(step.text, step)
    try:
        return Played(effects=model.fire(trigger, *args))
    except ProcessMachineError as error:
        return Played(error=error)


def check(model: WorkerProcess, played: Played | None, step: Step) -> None:
    text = step.text
    if text.startswith("process is "):
        wanted = text.removeprefix("process is ").strip()
        if model.state.value != wanted:
            raise ProcessScenarioFailure(step, f"the process is {model.state}")
        return
    if played is None:
        raise SpecSyntaxError(step.source, step.line, "a 'then' about effects before a 'when'")
    if text.startswith("error"):
        expected = text.removeprefix("error").strip()
        if played.error is None:
            raise ProcessScenarioFailure(step, f"no error; effects: {played.effects}")
        if expected and parse_value(expected) not in str(played.error):
            raise ProcessScenarioFailure(step, f"the error says: {played.error}")
        return
    if played.error is not None:
        raise ProcessScenarioFailure(step, f"the 'when' raised: {played.error}")
    check_effects(played.effects, step)


def check_effects(effects: Sequence[ProcessEffect], step: Step) -> None:
    text = step.text
    if text == "no effects":
        if effects:
            raise ProcessScenarioFailure(step, f"effects: {list(effects)}")
    elif text.startswith("no effect "):
        patterns = parse_patterns(text.removeprefix("no effect "), step)
        hits = [e for e in effects for p in patterns if effect_matches(p, e)]
        if hits:
            raise ProcessScenarioFailure(step, f"these match: {hits}")
    elif text.startswith("effects are "):
        patterns = parse_patterns(text.removeprefix("effects are "), step)
        if len(patterns) != len(effects) or not all(
            effect_matches(p, e) for p, e in zip(patterns, effects, strict=True)
        ):
            raise ProcessScenarioFailure(step, f"the effects, in order: {list(effects)}")
    elif text.startswith("effects include "):
        unmatched = list(effects)
        for pattern in parse_patterns(text.removeprefix("effects include "), step):
            hit = next((e for e in unmatched if effect_matches(pattern, e)), None)
            if hit is None:
                raise ProcessScenarioFailure(
                    step, f"nothing (else) matches {pattern[0]}: {list(effects)}")
            unmatched.remove(hit)
    else:
        raise SpecSyntaxError(step.source, step.line, f"unknown then: {text!r}")
