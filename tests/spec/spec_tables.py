"""The grammar of the transition tables of specs/, and the code's tables in the same shape.

A spec row and a code row are compared as ``Shape`` values: (trigger, sources as a set,
destination or ``=``, guard terms as a set). The effects column has its own tiny grammar
(specs/README.md, "Effects"), parsed here into ``EffectItem`` values that the product test
compares with what ``Supervisor.fire`` really emits.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from specparse import Row, SpecDoc, SpecSyntaxError, parse_file

SPECS = Path(__file__).resolve().parents[2] / "specs"
NONE_MARKS = ("", "—", "-", "none")
STAYS = "="
EACH_WORKER = re.compile(r"^each worker:\s*(\w+)$")
PLAIN_EFFECT = re.compile(r"^(Log\((debug|info|warning|error)\)|Kill\(([A-Z]+|signo)\)|"
                          r"RunHook\(\w+\)|SetTitle|ReopenLogs|Exit|Spawn|WakeAt|"
                          r"ReadConfig|Reply|Notify)$")
MOVED = " if moved"


@functools.cache
def load(name: str) -> SpecDoc:
    """``specs/<name>``, parsed once per test session."""
    return parse_file(SPECS / name)


@dataclass(frozen=True)
class Shape:
    """What a transition row is, independent of how it was written."""

    trigger: str
    sources: frozenset[str]
    dest: str
    guard: frozenset[tuple[str, bool]]

    def __str__(self) -> str:
        return (f"{', '.join(sorted(self.sources))} --{self.trigger}"
                f"{guard_text(self.guard)}--> {self.dest}")


def guard_text(guard: Iterable[tuple[str, bool]]) -> str:
    terms = [name if wanted else f"not {name}" for name, wanted in sorted(guard)]
    return f" [{' and '.join(terms)}]" if terms else ""


@dataclass(frozen=True)
class EffectItem:
    """One item of the effects column.

    ``each_worker`` names the worker trigger a master row fires on every worker; otherwise
    ``effect`` is the normalised effect (``Log(info)``, ``Kill(QUIT)``, ``SetTitle``...).
    ``moved_only`` marks the state-change announcement of a row whose ``to`` is also one of
    its ``from`` states: it is emitted only when the state really changes.
    """

    effect: str | None
    each_worker: str | None
    moved_only: bool


@dataclass(frozen=True)
class SpecRow:
    """A parsed row of a ``## Transitions`` table."""

    row: Row
    shape: Shape
    effects: tuple[EffectItem, ...]

    def allows(self, state: str, valuation: Mapping[str, bool]) -> bool:
        """Whether this row applies in ``state`` with guards valued as given."""
        return state in self.shape.sources and all(
            valuation.get(name, False) is wanted for name, wanted in self.shape.guard
        )


def parse_guard(cell: str, where: str) -> frozenset[tuple[str, bool]]:
    """``""`` / ``NAME`` / ``not NAME`` / ``A and not B`` as a set of (name, wanted)."""
    if cell.strip() in NONE_MARKS:
        return frozenset()
    terms: set[tuple[str, bool]] = set()
    for term in cell.split(" and "):
        words = term.split()
        if len(words) == 1 and words[0].isidentifier():
            terms.add((words[0], True))
        elif len(words) == 2 and words[0] == "not" and words[1].isidentifier():
            terms.add((words[1], False))
        else:
            raise SpecSyntaxError(*_split(where), f"a guard is NAME or 'not NAME': {cell!r}")
    return frozenset(terms)


def parse_effects(cell: str, where: str) -> tuple[EffectItem, ...]:
    """The effects column: comma-separated items, or ``—`` for none."""
    if cell.strip() in NONE_MARKS:
        return ()
    items = []
    for raw in (part.strip() for part in cell.split(",")):
        text = raw
        moved_only = text.endswith(MOVED)
        if moved_only:
            text = text[: -len(MOVED)].strip()
        each = EACH_WORKER.match(text)
        if each:
            items.append(EffectItem(None, each.group(1), moved_only))
        elif PLAIN_EFFECT.match(text):
            items.append(EffectItem(text, None, moved_only))
        else:
            raise SpecSyntaxError(*_split(where), f"not an effect of the grammar: {raw!r}")
    return tuple(items)


def _split(where: str) -> tuple[str, int]:
    source, _, line = where.rpartition(":")
    return source, int(line)


def spec_rows(doc: SpecDoc, states: Iterable[str], triggers: Iterable[str]) -> list[SpecRow]:
    """The ``## Transitions`` rows of a spec, checked against the names it declares."""
    known_states, known_triggers = set(states), set(triggers)
    parsed = []
    for row in doc.table("Transitions").rows:
        sources = frozenset(part.strip() for part in row["from"].split(","))
        dest = row["to"].strip()
        unknown = (sources | ({dest} - {STAYS})) - known_states
        if unknown:
            raise SpecSyntaxError(row.source, row.line, f"unknown states {sorted(unknown)}")
        if row["event"] not in known_triggers:
            raise SpecSyntaxError(row.source, row.line, f"unknown event {row['event']!r}")
        shape = Shape(row["event"], sources, dest, parse_guard(row["guard"], row.where))
        parsed.append(SpecRow(row, shape, parse_effects(row["effects"], row.where)))
    return parsed


def _names(value: Any) -> list[str]:
    if value is None:
        return []
    values = value if isinstance(value, list | tuple) else [value]
    return [v.value if isinstance(v, Enum) else str(v) for v in values]


def code_shapes(transitions: Sequence[Mapping[str, Any]]) -> list[Shape]:
    """The code's table (a ``transitions`` list of dicts) as ``Shape`` values."""
    shapes = []
    for row in transitions:
        dest = row.get("dest")
        guard = {(name, True) for name in _names(row.get("conditions"))}
        guard |= {(name, False) for name in _names(row.get("unless"))}
        shapes.append(Shape(
            row["trigger"], frozenset(_names(row["source"])),
            STAYS if dest is None else _names(dest)[0], frozenset(guard),
        ))
    return shapes


def guards_of(rows: Iterable[SpecRow], trigger: str) -> list[str]:
    """The guard names the rows of ``trigger`` read, sorted."""
    return sorted({name for row in rows if row.shape.trigger == trigger
                   for name, _ in row.shape.guard})
