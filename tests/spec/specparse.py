"""A small stdlib reader for the Markdown of specs/: tables, invariants and scenarios.

The specs are written for people first, so the reader asks little of them: ``## `` headings
open sections, GFM tables inside a section are its rows (several tables in one section are
read as one, so rows can be grouped under prose or ``###`` sub-headings), list items or
headings starting ``INV-n name:`` are invariants, and fenced blocks whose info string is
``scenario`` are scenarios. Everything else is prose and ignored.

Every row, invariant, scenario and step keeps the line it came from, so a failing test can
point a reader at the exact line of the spec (``specs/master.md:123``). The reader knows
nothing about prefork: it turns text into data, and the tests give the data its meaning.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

FENCE = re.compile(r"^(`{3,}|~{3,})\s*([\w-]*)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
DELIMITER_CELL = re.compile(r"^:?-{3,}:?$")
INVARIANT = re.compile(r"^(?:[-*+]\s+|#{2,6}\s+)?INV-(\d+)\s+([^:]+?):\s*(.*)$")
STEP_KEYWORDS = ("given", "when", "then")


class SpecSyntaxError(ValueError):
    """The spec's text does not follow the grammar of specs/README.md.

    The message starts with ``file:line`` so an editor (and a reader of a CI log) can jump
    to the offending line.
    """

    def __init__(self, source: str, line: int, message: str) -> None:
        self.source = source
        self.line = line
        super().__init__(f"{source}:{line}: {message}")


@dataclass(frozen=True)
class Row:
    """One table row: its cells by (lower-cased) column name, and where it was written."""

    source: str
    line: int
    cells: dict[str, str]

    def __getitem__(self, column: str) -> str:
        return self.cells[column]

    @property
    def where(self) -> str:
        return f"{self.source}:{self.line}"


@dataclass(frozen=True)
class Table:
    """Every table row of one ``## `` section, under one header."""

    section: str
    line: int
    columns: tuple[str, ...]
    rows: tuple[Row, ...]


@dataclass(frozen=True)
class Invariant:
    """``INV-n name: statement`` (a statement may continue on the following lines)."""

    source: str
    line: int
    number: int
    name: str
    statement: str


@dataclass(frozen=True)
class Step:
    """One ``given``, ``when`` or ``then`` line of a scenario, without its keyword."""

    source: str
    line: int
    keyword: str
    text: str

    @property
    def where(self) -> str:
        return f"{self.source}:{self.line}"

    def __str__(self) -> str:
        return f"{self.keyword} {self.text}"


@dataclass(frozen=True)
class Scenario:
    """A fenced ``scenario`` block: a name and its steps, in order."""

    source: str
    line: int
    name: str
    steps: tuple[Step, ...]

    @property
    def test_id(self) -> str:
        """``master.md:123 QUIT lets a performing worker finish``: the pytest id."""
        return f"{Path(self.source).name}:{self.line} {self.name}"


@dataclass
class SpecDoc:
    """Everything the tests read from one spec file."""

    source: str
    tables: dict[str, Table] = field(default_factory=dict)
    invariants: list[Invariant] = field(default_factory=list)
    scenarios: list[Scenario] = field(default_factory=list)

    def table(self, section: str) -> Table:
        """The rows of section ``## {section}``; a spec without it is a syntax error."""
        try:
            return self.tables[section.lower()]
        except KeyError:
            raise SpecSyntaxError(self.source, 1, f"no '## {section}' table") from None


def split_cells(line: str) -> list[str]:
    """The cells of a ``| a | b |`` line (``\\|`` is a literal bar), backticks removed."""
    body = line.strip()
    if body.startswith("|"):
        body = body[1:]
    if body.endswith("|") and not body.endswith("\\|"):
        body = body[:-1]
    cells = re.split(r"(?<!\\)\|", body)
    return [cell.replace("\\|", "|").replace("`", "").strip() for cell in cells]


def parse_file(path: Path, source: str | None = None) -> SpecDoc:
    """Read one spec file; ``source`` is how messages name it (default: ``specs/<name>``)."""
    return parse_text(path.read_text(encoding="utf-8"), source or f"specs/{path.name}")


def parse_text(text: str, source: str) -> SpecDoc:
    """Read a spec's text: tables by section, invariants and scenarios, with line numbers."""
    doc = SpecDoc(source)
    lines = text.splitlines()
    section = ""
    index = 0
    while index < len(lines):
        line = lines[index]
        number = index + 1
        fence = FENCE.match(line)
        if fence:
            index = _read_fence(doc, lines, index, fence.group(1), fence.group(2))
            continue
        heading = HEADING.match(line)
        if heading and len(heading.group(1)) == 2:
            section = heading.group(2).strip().lower()
        if line.lstrip().startswith("|"):
            index = _read_table(doc, lines, index, section)
            continue
        if section == "invariants":
            _read_invariant(doc, lines, index)
        elif INVARIANT.match(line.strip()):
            raise SpecSyntaxError(source, number, "an INV-n line outside '## Invariants'")
        index += 1
    return doc


def _read_fence(doc: SpecDoc, lines: list[str], start: int, marker: str, info: str) -> int:
    """Skip a fenced block (reading it if it is a scenario); return the index after it."""
    end = start + 1
    while end < len(lines) and not lines[end].strip().startswith(marker):
        end += 1
    if end == len(lines):
        raise SpecSyntaxError(doc.source, start + 1, "a fenced block is never closed")
    if info == "scenario":
        doc.scenarios.append(_read_scenario(doc.source, lines, start, end))
    return end + 1


def _read_scenario(source: str, lines: list[str], start: int, end: int) -> Scenario:
    name: str | None = None
    steps: list[Step] = []
    for index in range(start + 1, end):
        number = index + 1
        text = lines[index].strip()
        if not text or text.startswith("#"):
            continue
        if name is None:
            if not text.startswith("name:") or not text[5:].strip():
                raise SpecSyntaxError(source, number, "a scenario starts with 'name: ...'")
            name = text[5:].strip()
            continue
        keyword, _, rest = text.partition(" ")
        if keyword not in STEP_KEYWORDS or not rest.strip():
            raise SpecSyntaxError(
                source, number, f"a step starts with given, when or then: {text!r}"
            )
        steps.append(Step(source, number, keyword, rest.strip()))
    if name is None:
        raise SpecSyntaxError(source, start + 1, "an empty scenario block")
    if not any(step.keyword == "when" for step in steps):
        raise SpecSyntaxError(source, start + 1, f"scenario {name!r} has no 'when' step")
    return Scenario(source, start + 1, name, tuple(steps))


def _read_table(doc: SpecDoc, lines: list[str], start: int, section: str) -> int:
    """Read one GFM table (header, delimiter, rows); return the index after it."""
    header = [cell.lower() for cell in split_cells(lines[start])]
    if start + 1 >= len(lines) or not all(
        DELIMITER_CELL.match(cell) for cell in split_cells(lines[start + 1])
    ):
        raise SpecSyntaxError(doc.source, start + 2, "a table header needs a |---| line")
    rows: list[Row] = []
    index = start + 2
    while index < len(lines) and lines[index].lstrip().startswith("|"):
        cells = split_cells(lines[index])
        if len(cells) != len(header):
            raise SpecSyntaxError(
                doc.source, index + 1, f"{len(cells)} cells under {len(header)} columns"
            )
        rows.append(Row(doc.source, index + 1, dict(zip(header, cells, strict=True))))
        index += 1
    if not section:
        raise SpecSyntaxError(doc.source, start + 1, "a table before any '## ' heading")
    existing = doc.tables.get(section)
    if existing is None:
        doc.tables[section] = Table(section, start + 1, tuple(header), tuple(rows))
    elif existing.columns != tuple(header):
        raise SpecSyntaxError(
            doc.source, start + 1,
            f"columns {header} differ from the section's first table {list(existing.columns)}",
        )
    else:
        doc.tables[section] = Table(
            section, existing.line, existing.columns, existing.rows + tuple(rows)
        )
    return index


def _read_invariant(doc: SpecDoc, lines: list[str], index: int) -> None:
    match = INVARIANT.match(lines[index].strip())
    if not match:
        return
    statement = [match.group(3).strip()]
    follow = index + 1
    while follow < len(lines) and lines[follow].startswith((" ", "\t")) and lines[follow].strip():
        statement.append(lines[follow].strip())
        follow += 1
    doc.invariants.append(
        Invariant(
            doc.source, index + 1, int(match.group(1)), match.group(2).strip(),
            " ".join(part for part in statement if part),
        )
    )
