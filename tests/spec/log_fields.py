"""The fields of the core's log lines, checked against the table in docs/guide.md.

With ``log_format = "json"`` a log line's fields are what log pipelines read, so they are
an interface: each event has the fields the guide's table lists, in that order, and they
say what the message says (the worker the words name, the states a transition names, the
reason a KILL gives). ``Log`` does not compare its fields (two lines with the same words
are the same line), so the scenarios alone would not notice a field gone wrong; the spec
runner hands every line the core writes to ``problems``.
"""

from __future__ import annotations

import re
from pathlib import Path

from prefork.core import Log

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "guide.md"
_ROW = re.compile(r"^\| `(\w+)` \| ((?:`\w+`(?:, )?)+) \|")

WORKER_FIELDS = ("pool", "slot", "worker_pid")
KILL_REASONS = {"graceful_timeout", "kill_timeout", "timeout"}
TIMEOUT_OUTCOMES = {"setup failed", "timed out"}
# the banner's lines are written by the adapter, not the core
NOT_FROM_THE_CORE = {"started", "pool"}


def documented_events() -> dict[str, tuple[str, ...]]:
    """Each event of the guide's table and its fields, in order."""
    text = GUIDE.read_text()
    table = text[text.index("<!-- log events:"):]
    events = {}
    for line in table.splitlines()[1:]:
        if not line.startswith("|"):
            if events:
                break
            continue
        match = _ROW.match(line)
        if match:
            events[match.group(1)] = tuple(re.findall(r"`(\w+)`", match.group(2)))
    return events


EVENTS = documented_events()
# the events the spec runner has seen the core write, for the test that each was seen
SEEN: set[str] = set()


# the words of each event's line: a line in these words must carry the event's fields
WORDS = {
    "master": r"^master \S+ -> \S+ \(\w+\)$",
    "spawned": r"^worker group=.* spawned$",
    "fork_failed": r"^worker group=.* fork failed: ",
    "transition": r"^worker group=.* \S+ -> \S+ \(\w+\)$",
    "perform_failed": r"^worker group=.* performs? failed \(\d+ in all\)$",
    "timed_out": r"^worker group=.*dumping its stack \(ABRT\)$",
    "killed": r"^worker group=.* did not stop in time; KILL$",
    "exited": r"^worker group=\S+ slot=\d+ pid=\d+ (retired|exited|crashed|killed|setup failed"
              r"|timed out) ",
    "recycling": r"^worker group=.*: recycling \(it works on until its replacement is ready\)$",
    "memory_runaway": r"^worker group=.* still growing inside one perform: QUIT",
    "scaled": r"^group .*: \d+ -> \d+ workers$",
    "rescaled": r"^pool .*: \d+ -> \d+ workers \(",
    "backoff": r"^pool .* next start in \S+s \(slot .* failed \d+ times in a row\)$",
    "gave_up": r"^pool .*: more than \d+ crashes in \S+s: giving up$",
    "reloaded": r"^config file .* reloaded$",
    "stopped": r"^master stopped: ",
}


def problems(line: Log) -> list[str]:
    """What is wrong with ``line``'s fields (nothing for a good line)."""
    fields = line.fields
    if not isinstance(fields, tuple):
        return [f"fields must be a tuple of pairs, not {fields!r}"]
    if not fields:
        return [f"the line of event {event!r} has no fields ({line.message!r})"
                for event, words in WORDS.items() if re.search(words, line.message)][:1]
    keys = [key for key, _ in fields]
    if keys[0] != "event":
        return [f"the first field must be the event, not {keys[0]!r}"]
    event = fields[0][1]
    if event not in EVENTS:
        return [f"event {event!r} is not in docs/guide.md's table"]
    if tuple(keys[1:]) != EVENTS[event]:
        return [f"event {event!r} has fields {keys[1:]}, the guide says {list(EVENTS[event])}"]
    return _disagreements(event, dict(fields[1:]), line.message)


def _disagreements(event: str, values: dict[str, object], message: str) -> list[str]:
    found = []
    if "worker_pid" in values:
        label = f"group={values['pool']} slot={values['slot']} pid={values['worker_pid']}"
        if label not in message or not isinstance(values["slot"], int):
            found.append(f"{event}: the fields name {label}, the message does not")
    if "trigger" in values:
        move = f"{values['from']} -> {values['to']} ({values['trigger']})"
        if move not in message or not all(isinstance(values[k], str) for k in
                                           ("from", "to", "trigger")):
            found.append(f"{event}: the fields say {move}, the message does not")
    found += _per_event(event, values, message)
    return [f"{problem} ({message!r})" for problem in found]


def _per_event(event: str, values: dict[str, object], message: str) -> list[str]:
    checks = {
        "scaled": lambda: (f"group {values['pool']}: {values['from']} -> {values['to']} "
                           in message),
        "rescaled": lambda: (f"pool {values['pool']}: {values['from']} -> {values['to']} "
                             "workers" in message and isinstance(values["busy"], int)
                             and isinstance(values["idle"], int)),
        "backoff": lambda: (message.startswith(f"pool {values['pool']}: ")
                            and f"next start in {values['delay']:g}s (slot {values['pool']}."
                                f"{values['slot']} failed {values['failures']} times" in message),
        "gave_up": lambda: message.startswith(f"pool {values['pool']}: more than "),
        "killed": lambda: values["reason"] in KILL_REASONS,
        "timed_out": lambda: values["outcome"] in TIMEOUT_OUTCOMES,
        "exited": lambda: (isinstance(values["outcome"], str)
                           and f" {values['outcome']} " in message
                           and isinstance(values["status"], int)
                           and isinstance(values["performs"], int)
                           and (values["perform"] is None
                                or values["perform"] == values["performs"] + 1)),
        "perform_failed": lambda: f"({values['failures']} in all)" in message,
        "fork_failed": lambda: (isinstance(values["error"], str)
                                and message.endswith(f"fork failed: {values['error']}")),
        "reloaded": lambda: f"config file {values['config_file']} reloaded" in message,
        "stopped": lambda: isinstance(values["exit_code"], int),
        "recycling": lambda: (values["reason"] in ("max_performs", "max_memory")
                              and f"{values['reason']} " in message
                              and isinstance(values["performs"], int)
                              and (values["uss_mib"] is not None) == (" MiB USS" in message)
                              and message.endswith("recycling (it works on until its "
                                                   "replacement is ready)")),
        "memory_runaway": lambda: (f"over max_memory {values['limit_mib']} MiB" in message
                                   and isinstance(values["uss_mib"], int | float)
                                   and re.search(r"still growing inside one perform: QUIT, "
                                                 r"then KILL after graceful_timeout \(\S+s\)$",
                                                 message) is not None),
    }
    check = checks.get(event)
    return [] if check is None or check() else [f"{event}: fields {values} disagree"]


def hook_disagreements(effects: list) -> list[str]:
    """An ``exited`` line and the ``on_worker_exit`` hook after it are told the same end:
    pid, status, pool, slot, outcome and the perform it was in."""
    found = []
    for index, effect in enumerate(effects):
        if not (isinstance(effect, Log) and effect.fields
                and effect.fields[0] == ("event", "exited")):
            continue
        values = dict(effect.fields)
        told = (values["worker_pid"], values["status"], values["pool"], values["slot"],
                values["outcome"], values["perform"])
        hooks = [e.args for e in effects[index + 1:]
                 if type(e).__name__ == "RunHook" and e.name == "on_worker_exit"]
        if not hooks or tuple(str(a) if i == 4 else a for i, a in enumerate(hooks[0])) != told:
            found.append(f"the exited line says {told}, the hook is told "
                         f"{hooks[0] if hooks else 'nothing'}")
    return found
