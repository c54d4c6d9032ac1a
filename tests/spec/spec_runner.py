"""Runs the ``scenario`` blocks of specs/ against the pure core.

The grammar is documented in specs/README.md; this module is its only interpreter. A
scenario plays the adapter: it builds a ``Supervisor``, boots it, answers every ``Spawn``
with ``Forked`` (worker N gets pid 100 + N, N counting Spawns from 1 in the order the core
asked for them) or, when told to, with ``ForkFailed``, and hands the core the events the
``when`` steps name. ``then`` steps look at the effects of the latest ``when`` (its
answers included) and at the states of the machines.

A step the interpreter does not understand is a ``SpecSyntaxError``; a step whose claim
does not hold is a ``ScenarioFailure``. Both name the spec file and line, so the test
report points at the Markdown a person reads, not at this file.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import log_fields
from specparse import Scenario, SpecSyntaxError, Step

from prefork.core import (
    Boot,
    ChildExited,
    ConfigLoaded,
    ConfigRejected,
    CoreError,
    Effect,
    Event,
    Forked,
    ForkFailed,
    Log,
    MemorySampled,
    Observed,
    PoolConfig,
    ReadConfig,
    Reload,
    Scale,
    Sig,
    Signal,
    Spawn,
    StartWorker,
    Status,
    StopAll,
    StopWorker,
    Supervisor,
    Tick,
    WakeAt,
    Worker,
    WorkerState,
)

PID_BASE = 100
FORK_ERROR = "EAGAIN"
EVENT_TYPES: dict[str, type[Event]] = {
    cls.__name__: cls
    for cls in (Boot, Signal, Forked, ForkFailed, ChildExited, Observed, MemorySampled, Tick,
                StartWorker, StopWorker, StopAll, Scale, Reload, ConfigLoaded, ConfigRejected,
                Status)
}
CONFIG_EVENTS = (Reload, ConfigLoaded)  # events whose one argument is a config
LOG_LEVELS = ("debug", "info", "warning", "error")
EFFECT_NAMES = ("Spawn", "Kill", "Log", "ReopenLogs", "SetTitle", "WakeAt", "Exit", "RunHook",
                "ReadConfig", "Reply", "Notify")
CALL = re.compile(r"^(\w+)\s*(?:\((.*)\))?$")
AT = re.compile(r"^(.*?)\s+at\s+t=(\S+)$")
WORKER_REF = re.compile(r"^worker\s+(\d+)$")
PID_REF = re.compile(r"^pid\s+(\d+)$")


class ScenarioFailure(AssertionError):
    """A ``then`` that does not hold (or a ``when`` that failed unannounced)."""

    def __init__(self, step: Step, why: str) -> None:
        super().__init__(f"{step.where}: {step}\n    {why}")


# values ---------------------------------------------------------------------------------


def parse_value(text: str) -> Any:
    """A literal of the grammar: int, float, true/false, None, a quoted text or a word."""
    text = text.strip()
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered == "none":
        return None
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return text[1:-1]
    return text


def parse_groups(text: str) -> dict[str, int]:
    """``mail:2,sms:1`` as a mapping of group names to worker counts."""
    groups: dict[str, int] = {}
    for part in text.split(","):
        name, sep, count = part.strip().partition(":")
        if not sep:
            raise ValueError(f"a group is name:count, not {part!r}")
        groups[name.strip()] = int(count)
    return groups


def parse_config(text: str) -> PoolConfig:
    """``workers=2 graceful_timeout=30 groups=a:1,b:2`` as a ``PoolConfig``."""
    options: dict[str, Any] = {}
    for token in text.split():
        key, sep, raw = token.partition("=")
        if not sep:
            raise ValueError(f"a config option is key=value, not {token!r}")
        options[key] = parse_groups(raw) if key == "groups" else parse_value(raw)
    return PoolConfig.of(**options)


def split_args(text: str) -> list[str]:
    """Split ``a, b(c, d), e`` on its top-level commas (quotes protect commas too)."""
    parts: list[str] = []
    depth = 0
    quote = ""
    current: list[str] = []
    for char in text:
        if quote:
            quote = "" if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    if "".join(current).strip():
        parts.append("".join(current).strip())
    return parts


def split_call(text: str) -> tuple[str, list[str]]:
    """``Name(a, b)`` as ``("Name", ["a", "b"])``; a bare ``Name`` has no arguments."""
    match = CALL.match(text.strip())
    if not match:
        raise ValueError(f"expected Name or Name(arguments), not {text!r}")
    return match.group(1), split_args(match.group(2) or "")


# effect patterns --------------------------------------------------------------------------


@dataclass(frozen=True)
class EffectPattern:
    """One effect as a ``then`` names it; fields left out match anything."""

    text: str
    kind: str
    fields: tuple[tuple[str, Any], ...]
    contains: str | None = None

    def matches(self, effect: Effect) -> bool:
        if type(effect).__name__ != self.kind:
            return False
        if any(getattr(effect, name) != value for name, value in self.fields):
            return False
        if self.contains is not None:
            text = getattr(effect, "message", None) or getattr(effect, "text", "")
            return self.contains in text
        return True


class Refs:
    """Turns ``worker N`` and ``pid N`` into pids, as the scenario has numbered them."""

    def __init__(self, pid_of: Callable[[int], int]) -> None:
        self.pid_of = pid_of

    def pid(self, text: str) -> int:
        worker = WORKER_REF.match(text.strip())
        if worker:
            return self.pid_of(int(worker.group(1)))
        pid = PID_REF.match(text.strip())
        if pid:
            return int(pid.group(1))
        value = parse_value(text)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ValueError(f"a pid is 'worker N' or 'pid N', not {text!r}")


def parse_pattern(text: str, refs: Refs) -> EffectPattern:
    """One effect of a ``then``: ``Kill(worker 1, QUIT)``, ``Log(error, "crashed")``..."""
    kind, args = split_call(text)
    if kind not in EFFECT_NAMES:
        raise ValueError(f"no effect {kind!r} (effects: {', '.join(EFFECT_NAMES)})")
    fields: list[tuple[str, Any]] = []
    contains: str | None = None
    if kind == "Spawn":
        if len(args) > 2:
            raise ValueError("Spawn(group, slot)")
        fields += [(name, parse_value(arg) if name == "slot" else arg)
                   for name, arg in zip(("group", "slot"), args, strict=False)]
    elif kind == "Kill":
        for arg in args:
            if arg.upper() == arg and arg in Sig.__members__:
                fields.append(("signo", Sig[arg]))
            else:
                fields.append(("pid", refs.pid(arg)))
    elif kind == "Log":
        if len(args) > 2:
            raise ValueError('Log(level) or Log(level, "text")')
        if args:
            if args[0] not in LOG_LEVELS:
                raise ValueError(f"a log level is one of {', '.join(LOG_LEVELS)}")
            fields.append(("level", args[0]))
        if len(args) == 2:
            contains = str(parse_value(args[1]))
    elif kind in ("SetTitle", "Notify"):
        if len(args) > 1:
            raise ValueError(f'{kind}("text")')
        if args:
            contains = str(parse_value(args[0]))
    elif kind in ("WakeAt", "Exit", "ReadConfig", "Reply"):
        if len(args) > 1:
            raise ValueError(f"{kind}(value)")
        if args:
            name = {"WakeAt": "when", "Exit": "code", "ReadConfig": "path"}.get(kind, "request")
            fields.append((name, parse_value(args[0])))
    elif kind == "RunHook":
        if args:
            fields.append(("name", args[0]))
        if len(args) > 1:
            fields.append(("args", tuple(hook_argument(arg, refs) for arg in args[1:])))
    elif args:
        raise ValueError(f"{kind} takes no arguments")
    return EffectPattern(text.strip(), kind, tuple(fields), contains)


def hook_argument(text: str, refs: Refs) -> Any:
    """An argument of a hook as a pattern names it: ``worker N`` is that worker's pid."""
    return refs.pid(text) if WORKER_REF.match(text.strip()) else parse_value(text)


def assign(patterns: Sequence[EffectPattern], effects: Sequence[Effect]) -> bool:
    """Whether each pattern can take a different effect (a multiset match, backtracking)."""

    @functools.cache
    def place(index: int, taken: frozenset[int]) -> bool:
        if index == len(patterns):
            return True
        return any(
            place(index + 1, taken | {position})
            for position, effect in enumerate(effects)
            if position not in taken and patterns[index].matches(effect)
        )

    return place(0, frozenset())


def show(effects: Iterable[Effect]) -> str:
    """Effects one per line, for failure messages."""
    lines = [f"      {effect!r}" for effect in effects]
    return "\n".join(lines) if lines else "      (none)"


# the run ------------------------------------------------------------------------------


class Adapter:
    """Plays the POSIX adapter around a real ``Supervisor``, with fake pids.

    It answers every ``Spawn`` at once, as the real adapter promises, with ``Forked``
    (worker N, the Nth spawn, gets pid 100 + N) or, ``failing_forks`` times, with
    ``ForkFailed``; every ``ReadConfig`` with ``ConfigLoaded(file_config)`` (the config
    the core started with, unless a scenario put another in the file) or, when
    ``file_rejection`` says why, with ``ConfigRejected``; and it remembers the latest
    ``WakeAt``.
    """

    def __init__(self, config: PoolConfig | None = None) -> None:
        self.supervisor = Supervisor(config)
        self.workers: list[Worker] = []
        self.failing_forks = 0
        self.latest_wake: float | None = None
        self.file_config = self.supervisor.config
        self.file_rejection: str | None = None

    def worker(self, number: int) -> Worker:
        if not 1 <= number <= len(self.workers):
            raise ValueError(f"there is no worker {number} yet ({len(self.workers)} spawned)")
        return self.workers[number - 1]

    def pid_of(self, number: int) -> int:
        worker = self.worker(number)
        if worker.pid is None:
            raise ValueError(f"worker {number} was never forked")
        return worker.pid

    def feed(self, event: Event) -> list[Effect]:
        """Hand the core one event and answer every Spawn; return all the effects."""
        effects = list(self.supervisor.handle(event))
        index = 0
        while index < len(effects):
            effect = effects[index]
            index += 1
            if isinstance(effect, WakeAt):
                self.latest_wake = effect.when
            if isinstance(effect, Spawn):
                effects += self.supervisor.handle(self.answer(effect))
            if isinstance(effect, ReadConfig):
                effects += self.supervisor.handle(self.read(effect))
        errors = self.supervisor.recount()
        assert not errors, f"the core's bookkeeping is off: {errors}"
        for line in effects:
            if isinstance(line, Log):
                wrong = log_fields.problems(line)
                assert not wrong, f"a log line's fields are off: {wrong}"
                if line.fields:
                    log_fields.SEEN.add(str(line.fields[0][1]))
        wrong = log_fields.hook_disagreements(effects)
        assert not wrong, f"a log line and its hook disagree: {wrong}"
        return effects

    def read(self, request: ReadConfig) -> Event:
        if self.file_rejection is not None:
            return ConfigRejected(request.path, self.file_rejection)
        return ConfigLoaded(self.file_config)

    def answer(self, spawn: Spawn) -> Event:
        worker = next(
            w for w in self.supervisor.workers
            if w.pid is None and w.group == spawn.group and w.slot == spawn.slot
        )
        self.workers.append(worker)
        if self.failing_forks:
            self.failing_forks -= 1
            return ForkFailed(spawn.group, spawn.slot, FORK_ERROR)
        return Forked(spawn.group, spawn.slot, PID_BASE + len(self.workers))


class ScenarioRun:
    """One scenario in progress: the adapter, the latest effects, a pending error."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.config = PoolConfig()
        self.has_terminal = False
        self.adapter: Adapter | None = None
        self.failing_forks = 0
        self.effects: list[Effect] = []
        self.error: CoreError | None = None
        self.error_step: Step | None = None
        self.error_seen = False
        self.refs = Refs(lambda number: self.core().pid_of(number))

    def core(self) -> Adapter:
        """The adapter and its supervisor, created (not booted) with the given config."""
        if self.adapter is None:
            self.adapter = Adapter(self.config)
        return self.adapter

    def booted(self) -> Supervisor:
        """The supervisor, booted at the current time if no step has booted it yet."""
        adapter = self.core()
        if adapter.supervisor.state.value == "booting":
            self.feed(Boot(has_terminal=self.has_terminal))
        return adapter.supervisor

    def feed(self, event: Event) -> list[Effect]:
        adapter = self.core()
        adapter.failing_forks += self.failing_forks
        self.failing_forks = 0
        return adapter.feed(event)

    # steps ----------------------------------------------------------------------------

    def run(self) -> None:
        for step in self.scenario.steps:
            if self.error is not None and step.keyword != "then":
                self.fail_on_error(step)
            try:
                getattr(self, f"do_{step.keyword}")(step)
            except (ValueError, KeyError, LookupError, TypeError) as problem:
                if isinstance(problem, SpecSyntaxError):
                    raise
                raise SpecSyntaxError(step.source, step.line, f"{step}: {problem}") from None
        if self.error is not None and not self.error_seen:
            self.fail_on_error(self.scenario.steps[-1])

    def fail_on_error(self, step: Step) -> None:
        assert self.error_step is not None
        if not self.error_seen:
            raise ScenarioFailure(
                self.error_step, f"raised CoreError, and no 'then error' says so: {self.error}"
            )
        raise SpecSyntaxError(
            step.source, step.line, "after 'then error' only 'then' steps may follow "
            "(the core is not used after a CoreError)",
        )

    def do_given(self, step: Step) -> None:
        text = step.text
        if text.startswith("config"):
            if self.adapter is not None:
                raise ValueError("'given config' must come before anything boots the core")
            self.config = parse_config(text[len("config"):])
        elif text == "terminal":
            if self.adapter is not None:
                raise ValueError("'given terminal' must come before anything boots the core")
            self.has_terminal = True
        elif match := re.fullmatch(r"the next (?:fork fails|(\d+) forks fail)", text):
            self.failing_forks += int(match.group(1) or 1)
        elif text.startswith("worker"):
            for part in split_args(text):
                self.given_worker(step, part)
        elif text.startswith("the config file holds "):
            self.core().file_config = parse_config(text[len("the config file holds "):])
        elif text.startswith("the config file is rejected: "):
            self.core().file_rejection = str(parse_value(text.split(": ", 1)[1]))
        else:
            raise ValueError("unknown 'given' (see specs/README.md)")

    def given_worker(self, step: Step, text: str) -> None:
        match = re.fullmatch(r"worker\s+(\d+)\s+(spawning|idle|performing)", text)
        if not match:
            raise ValueError(f"'worker N spawning|idle|performing', not {text!r}")
        supervisor = self.booted()
        number, state = int(match.group(1)), WorkerState(match.group(2))
        try:
            self.feed(Observed(self.core().pid_of(number), state, heartbeat_at=supervisor.now))
        except CoreError as error:
            raise ScenarioFailure(
                step, f"cannot bring worker {number} to {state}: {error}"
            ) from None

    def do_when(self, step: Step) -> None:
        text, at = step.text, None
        match = AT.match(text)
        if match:
            text, at = match.group(1), float(match.group(2))
        kind, args = split_call(text)
        if kind != "Boot":
            self.booted()
        if kind in ("Reload", "ConfigLoaded"):  # groups=a:1,b:2 has commas of its own
            args = [text[text.index("(") + 1: text.rindex(")")].strip()]
        event = self.build_event(kind, args, at)
        self.effects = []
        try:
            self.effects = self.feed(event)
        except CoreError as error:
            self.error, self.error_step = error, step

    def build_event(self, kind: str, args: list[str], at: float | None) -> Event:
        """The real event constructor named by a ``when``, with the grammar's values."""
        cls = EVENT_TYPES.get(kind)
        if cls is None:
            raise ValueError(f"no event {kind!r} (events: {', '.join(EVENT_TYPES)})")
        if cls in CONFIG_EVENTS:
            (config,) = args
            if not config.startswith("config"):
                raise ValueError(f"{kind}(config key=value ...)")
            return cls(parse_config(config[len("config"):]), at=at)
        names = [f.name for f in dataclasses.fields(cls) if f.name != "at"]
        values: dict[str, Any] = {}
        for position, arg in enumerate(args):
            name, sep, raw = arg.partition("=")
            if sep and name.strip() in names:
                name, arg = name.strip(), raw
            elif position < len(names):
                name = names[position]
            else:
                raise ValueError(f"{kind} takes {len(names)} arguments: {', '.join(names)}")
            values[name] = self.convert(name, arg)
        if cls is Boot:
            values.setdefault("has_terminal", self.has_terminal)
        if cls is Tick:
            if at is not None:
                values.setdefault("now", at)
            return Tick(**values)
        return cls(**values, at=at)

    def convert(self, name: str, text: str) -> Any:
        if name == "signo":
            if text.strip() not in Sig.__members__:
                known = ", ".join(Sig.__members__)
                raise ValueError(f"no signal {text.strip()!r} (signals: {known})")
            return Sig[text.strip()]
        if name == "pid":
            return self.refs.pid(text)
        if name == "state":
            return WorkerState(text.strip())
        value = parse_value(text)
        if name in ("group", "error", "path", "why") and not isinstance(value, str):
            value = text.strip()
        return value

    def do_then(self, step: Step) -> None:
        text = step.text
        if text == "error" or text.startswith("error "):
            return self.then_error(step, text[len("error"):].strip())
        if self.error is not None and not self.error_seen:
            self.fail_on_error(step)
        checks: dict[str, Callable[[Step, str], None]] = {
            "master is ": self.then_master,
            "worker ": self.then_worker,
            "group ": self.then_group,
            "effects include ": self.then_include,
            "effects are exactly ": self.then_exactly,
            "no effect ": self.then_no_effect,
            "wake at ": self.then_wake,
        }
        if text == "no effects":
            return self.then_exactly(step, "")
        if text == "no wake-up":
            return self.then_wake(step, "None")
        for prefix, check in checks.items():
            if text.startswith(prefix):
                return check(step, text[len(prefix):].strip())
        raise ValueError("unknown 'then' (see specs/README.md)")

    def then_error(self, step: Step, contains: str) -> None:
        if self.error is None:
            raise ScenarioFailure(step, "the latest 'when' raised no CoreError; effects:\n"
                                  + show(self.effects))
        text = str(parse_value(contains)) if contains else ""
        if text not in str(self.error):
            raise ScenarioFailure(step, f"the CoreError says {str(self.error)!r}")
        self.error_seen = True

    def then_master(self, step: Step, state: str) -> None:
        actual = self.core().supervisor.state.value
        if actual != state:
            raise ScenarioFailure(step, f"the master is {actual}")

    def then_worker(self, step: Step, text: str) -> None:
        match = re.fullmatch(r"(\d+) is (\w+)", text)
        if not match:
            raise ValueError("'then worker N is STATE'")
        WorkerState(match.group(2))
        actual = self.core().worker(int(match.group(1))).state.value
        if actual != match.group(2):
            raise ScenarioFailure(step, f"worker {match.group(1)} is {actual}")

    def then_group(self, step: Step, text: str) -> None:
        match = re.fullmatch(r"(\S+) has (\d+) workers?", text)
        if not match:
            raise ValueError("'then group G has N workers'")
        group, count = match.group(1), int(match.group(2))
        actual = self.core().supervisor.active_workers(group)
        if len(actual) != count:
            raise ScenarioFailure(step, f"group {group} has {len(actual)}: {actual}")

    def patterns(self, text: str) -> list[EffectPattern]:
        return [parse_pattern(part, self.refs) for part in split_args(text)]

    def then_include(self, step: Step, text: str) -> None:
        if not assign(self.patterns(text), self.effects):
            raise ScenarioFailure(step, "the effects of the latest 'when' were:\n"
                                  + show(self.effects))

    def then_exactly(self, step: Step, text: str) -> None:
        patterns = self.patterns(text)
        if len(patterns) != len(self.effects) or not assign(patterns, self.effects):
            raise ScenarioFailure(step, "the effects of the latest 'when' were:\n"
                                  + show(self.effects))

    def then_no_effect(self, step: Step, text: str) -> None:
        for pattern in self.patterns(text):
            hits = [effect for effect in self.effects if pattern.matches(effect)]
            if hits:
                raise ScenarioFailure(step, f"{pattern.text} matches:\n" + show(hits))

    def then_wake(self, step: Step, text: str) -> None:
        expected = parse_value(text)
        actual = self.core().latest_wake
        if actual != expected:
            raise ScenarioFailure(step, f"the latest WakeAt asks for {actual} (None: no wake-up)")


def run_scenario(scenario: Scenario) -> None:
    """Play one scenario; raise ``ScenarioFailure`` or ``SpecSyntaxError`` if it fails."""
    ScenarioRun(scenario).run()
