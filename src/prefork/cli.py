"""The ``prefork`` command.

``prefork run MODULE:ATTR [--workers N] ...`` (or ``prefork run --config FILE``) runs a
pool until it is stopped: a Job class is instantiated, an instance or a function is
used as is. Every option of ``prefork.Master`` that has a text form is a
``--kebab-case`` flag, made from the option registry (``prefork.options``); a true or
false option is a switch (``--graceful-term`` / ``--no-graceful-term``). Where a value
comes from, highest first: the flags, ``PREFORK_CMD_ARGS`` (more flags, as gunicorn's
``GUNICORN_CMD_ARGS``), one ``PREFORK_NAME`` variable per option, the config file, the
defaults; the same order at start and after every HUP. ``--check-config`` prints the
settings of every pool with where each value came from, and exits. The log goes to
stderr (or ``--log-file``), one line per transition.

Exit status: 0 after a clean stop, 2 on bad usage or a bad option or job (one clear line
on stderr, no traceback), 1 otherwise (the master gave up on a crash loop, or crashed).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shlex
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NoReturn

from prefork import __version__
from prefork.core.core_options import Flag, Option, Seconds
from prefork.core.errors import ConfigError
from prefork.options import (
    OPTIONS,
    Layer,
    PythonOnly,
    Settings,
    describe_default,
    environment_layer,
    from_text,
    given_layer,
    pool_key,
    settings_from,
)

PROG = "prefork"
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class _UsageError(Exception):
    """Bad usage of ``prefork run``: one line on stderr, exit 2."""


class _RunParser(argparse.ArgumentParser):
    """The ``run`` sub-command's parser: an error is one line, not usage plus a line."""

    def error(self, message: str) -> NoReturn:
        raise _UsageError(f"{self.prog}: error: {message} (see '{self.prog} --help')")


def _flag_type(option: Option) -> Callable[[str], Any]:
    """The argparse type of ``option``'s flag: its kind's ``parse``, with argparse's
    wording for a value that does not read (a bad value that reads is the option's
    ``ConfigError``, raised when the master is built)."""

    def parse(text: str) -> Any:
        try:
            value = option.kind.parse(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
        # seconds from a flag are floats, as the command has always given them
        return float(value) if isinstance(option.kind, Seconds) and value is not None else value

    parse.__name__ = option.name
    return parse


def _flag_help(option: Option) -> str:
    default = "" if option.default is None else f" (default {describe_default(option)})"
    return f"{option.doc}{default}".replace("%", "%%")


def flags_of(option: Option) -> list[str]:
    """The flags that set ``option`` on the command line, shortest first (none for the
    job, which is the argument, and for the options only Python can give)."""
    if option not in FLAG_OPTIONS:
        return []
    aliases = _FLAG_ALIASES.get(option.name, ())
    return [*filter(None, [option.short]), *aliases, option.flag]


def _add_option_flags(run: argparse.ArgumentParser) -> None:
    """One flag per option of the registry that has a text form (the job is the
    positional argument). A short flag (``-w``) is a second, silent argument of its own,
    so that an error names the flag that was typed."""
    for option in FLAG_OPTIONS:
        parse, metavar = _flag_type(option), _METAVARS.get(option.name, option.kind.metavar)
        names = [*_FLAG_ALIASES.get(option.name, ()), option.flag]
        text = _flag_help(option) + (f" (also {option.short})" if option.short else "")
        if isinstance(option.kind, Flag):  # a switch: --graceful-term / --no-graceful-term
            run.add_argument(*names, dest=option.name, action=argparse.BooleanOptionalAction,
                             default=None, help=text)
            continue
        run.add_argument(*names, dest=option.name, type=parse, metavar=metavar,
                         default=None, help=text)
        if option.short:
            run.add_argument(option.short, dest=option.name, type=parse, metavar=metavar,
                             default=None, help=argparse.SUPPRESS)


# every option of prefork.Master that has a text form, but the job (an argument)
FLAG_OPTIONS = tuple(option for option in OPTIONS if from_text(option) and option.name != "job")
_FLAG_ALIASES = {"config_file": ("-c", "--config"), "daemonize": ("-D", "--daemon")}
_METAVARS = {"config_file": "FILE", "name": "NAME"}
BY_NAME = {option.name: option for option in OPTIONS}
BY_FLAG_NAME = {option.name: option.flag for option in FLAG_OPTIONS}
CMD_ARGS_VARIABLE = "PREFORK_CMD_ARGS"
_SWITCHES = frozenset(option.flag for option in FLAG_OPTIONS if isinstance(option.kind, Flag))


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``prefork`` command."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Supervise a pool of pre-forked worker processes.",
        epilog="Signals and timeouts are described in docs/signals.md.",
    )
    parser.add_argument(
        "--version", action="version", version=f"{PROG} {__version__}"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_RunParser)
    run = commands.add_parser(
        "run",
        help="run a pool of workers until it is stopped",
        description=(
            "Run a pool of workers: 'prefork run MODULE:ATTR [--workers N] ...' or "
            "'prefork run --config prefork.toml'. MODULE:ATTR names a prefork.Job "
            "class (instantiated), an object with perform(), or a function. Send QUIT "
            "to stop gracefully, TERM or INT to stop now; docs/signals.md has the rest."
        ),
    )
    run.add_argument("job", nargs="?", metavar="MODULE:ATTR", help="the job to run")
    _add_option_flags(run)
    run.add_argument("--check-config", action="store_true",
                     help="load and check the settings, print them for every pool with "
                          "where each value came from, and exit (0, or 2 if they are bad)")
    run.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    init = commands.add_parser(
        "init",
        help="write a small project that runs as it stands",
        description=(
            "Write into DIR (made if missing) a jobs module with an example job, "
            "prefork.toml with two pools, a systemd unit (Type=notify), a logrotate "
            "snippet and a README; no existing file is overwritten. Then: "
            "'prefork run -c DIR/prefork.toml'."
        ),
    )
    init.add_argument("directory", metavar="DIR", help="where to write the project")
    init.add_argument("--name", default=None,
                      help="the project's name (default: the name of DIR)")
    _add_control_commands(commands)
    return parser


# the commands that talk to a running master: (help, the extra arguments' adder)
_CONTROL_HELP = {
    "status": "show the running master's pools and workers (a table, or --json)",
    "scale": "set a pool's number of workers: N, +N or -N",
    "stop": "stop the master: now (as TERM), or --graceful (as QUIT)",
    "reload": "reload the config file and replace the workers (as HUP)",
    "check": "exit 0 if the master is live and ready, 1 with the reason otherwise",
    "hold": "hold the workers between performs (as USR2)",
    "resume": "resume held workers (as CONT)",
    "reopen-logs": "reopen the log files (as USR1)",
}


def _add_control_commands(commands: Any) -> None:
    """``prefork status``, ``scale``, ``stop``...: one request to the control socket."""
    for name, text in _CONTROL_HELP.items():
        command = commands.add_parser(name, help=text, description=(
            f"{text[0].upper()}{text[1:]}. The master is found by -s SOCKET, -p PIDFILE, "
            "-c FILE (its control_socket, pidfile and name), or else at the default place "
            "of a master named $PREFORK_NAME (prefork)."))
        if name == "scale":
            command.add_argument("pool", metavar="POOL", help="the pool to scale")
            command.add_argument("n", metavar="N", help="workers: N, +N or -N")
        if name == "stop":
            command.add_argument("--graceful", action="store_true",
                                 help="let the performs finish (as QUIT)")
        if name == "status":
            command.add_argument("--json", action="store_true", help="print the JSON reply")
        where = command.add_mutually_exclusive_group()
        where.add_argument("-s", "--socket", metavar="SOCKET", help="the control socket")
        where.add_argument("-p", "--pidfile", metavar="PIDFILE",
                           help="the master's pid file (its socket is beside it)")
        where.add_argument("-c", "--config", metavar="FILE", help="the master's config file")
        command.add_argument("--timeout", type=float, default=5.0, metavar="SECONDS",
                             help="how long to wait for an answer (default 5)")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``prefork`` command with ``argv`` (default: ``sys.argv[1:]``).

    Returns the exit status instead of exiting, so that callers and tests can use it.
    """
    parser = build_parser()
    args_list = list(sys.argv[1:] if argv is None else argv)
    if not args_list:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        args, extra = parser.parse_known_args(fold_switch_values(args_list))
        if extra and args.command == "run":
            raise _UsageError(f"{PROG} run: error: unrecognized arguments: {' '.join(extra)} "
                              f"(see '{PROG} run --help')")
        if extra:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    except _UsageError as error:
        print(error, file=sys.stderr)
        return EXIT_USAGE
    except SystemExit as exit_:  # argparse exits after --help, --version or an error
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
    if args.command == "run":
        return run(args)
    if args.command == "init":
        return init(args)
    if args.command in _CONTROL_HELP:
        return control(args)
    parser.print_help(sys.stderr)  # unreachable with the commands above; kept as a guard
    return EXIT_USAGE


def _usage(message: str) -> int:
    print(f"{PROG}: {message}", file=sys.stderr)
    return EXIT_USAGE


def run(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> int:
    """``prefork run``: build the master, run it, return its exit status."""
    from prefork.api import EndpointInUse, Master, PidFileInUse  # not at import: --version

    environ = os.environ if environ is None else environ
    try:
        layers = [_flags_layer(args), *_environment_layers(environ)]
    except ConfigError as error:
        return _usage(str(error))
    except _UsageError as error:
        print(error, file=sys.stderr)
        return EXIT_USAGE
    if not any("job" in layer.shared or "config_file" in layer.shared for layer in layers):
        return _usage("run: give the job as MODULE:ATTR (or job = ... in --config FILE)")
    try:
        settings = settings_from(layers)
    except ConfigError as error:
        return _usage(str(error))
    if args.check_config:
        print(describe_settings(settings))
        return EXIT_OK
    master = Master._from_settings(settings)
    try:
        code = master.run()
    except ConfigError as error:  # found only when starting (a log file that won't open...)
        return _usage(str(error))
    except (PidFileInUse, EndpointInUse) as error:  # another master runs: this one must not
        print(f"{PROG}: {error}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_FAILED
    # The command exits next, and the interpreter's final collections walk every object:
    # frozen, they are skipped, and a stopped master is gone in a third of the time
    # (bench/: TERM to exit at 4 workers, 25 ms -> 10 ms).
    gc.freeze()
    return code


def _given(args: argparse.Namespace) -> dict[str, Any]:
    given = {option.name: getattr(args, option.name) for option in FLAG_OPTIONS
             if getattr(args, option.name) is not None}
    if args.job:
        given["job"] = args.job
    return given


def _flags_layer(args: argparse.Namespace) -> Layer:
    given = _given(args)
    where = {name: "the MODULE:ATTR argument" if name == "job" else BY_FLAG_NAME[name]
             for name in given}
    return given_layer(given, "flag", where)


def _environment_layers(environ: Mapping[str, str]) -> list[Layer]:
    """``PREFORK_CMD_ARGS`` (flags), then the ``PREFORK_NAME`` variables, highest first."""
    layers = []
    text = environ.get(CMD_ARGS_VARIABLE, "").strip()
    if text:
        try:
            words = shlex.split(text)
        except ValueError as error:
            raise _UsageError(f"{PROG}: {CMD_ARGS_VARIABLE}={text!r}: {error}") from None
        if "--check-config" in words or "--version" in words or "-h" in words \
                or "--help" in words:
            raise _UsageError(f"{PROG}: {CMD_ARGS_VARIABLE}={text!r}: holds options only")
        run = _run_parser()
        try:
            args = run.parse_args(fold_switch_values(words))
        except _UsageError as error:
            raise _UsageError(f"{error} (in {CMD_ARGS_VARIABLE})") from None
        given = _given(args)
        where = {name: f"{CMD_ARGS_VARIABLE} {BY_FLAG_NAME.get(name, 'MODULE:ATTR')}"
                 for name in given}
        layers.append(given_layer(given, CMD_ARGS_VARIABLE, where))
    layers.append(environment_layer(environ))
    return layers


_WORDS = {"true": True, "yes": True, "on": True, "1": True,
          "false": False, "no": False, "off": False, "0": False}


def fold_switch_values(words: Sequence[str]) -> list[str]:
    """``--graceful-term true`` (what the flag took before it was a switch) as the switch
    it means, ``--graceful-term`` or ``--no-graceful-term``; any other word after a switch
    is left alone (``--graceful-term myapp:Job`` keeps its job)."""
    folded: list[str] = []
    rest = list(words)
    while rest:
        word = rest.pop(0)
        if word in _SWITCHES and rest and rest[0].lower() in _WORDS:
            value = _WORDS[rest.pop(0).lower()]
            word = word if value else "--no-" + word[2:]
        folded.append(word)
    return folded


def _run_parser() -> argparse.ArgumentParser:
    parser = build_parser()
    commands = next(action for action in parser._actions
                    if isinstance(action, argparse._SubParsersAction))
    return commands.choices["run"]


def describe_settings(settings: Settings) -> str:
    """What ``--check-config`` prints: the master's settings, then each pool's, one line
    per option with its value and where it came from."""
    rows: dict[str | None, list[tuple[str, str, str]]] = {}
    for pool, name, value, origin in settings.effective():
        option = BY_NAME[name]
        if isinstance(option.kind, PythonOnly):
            continue
        rows.setdefault(pool, []).append((name, _shown(value), origin))
    width = max(len(name) for lines in rows.values() for name, _, _ in lines)
    value_width = max(len(value) for lines in rows.values() for _, value, _ in lines)
    out = []
    for pool, lines in rows.items():
        out.append("master" if pool is None else f"pool {pool_key(pool)}")
        out.extend(f"  {name:<{width}} = {value:<{value_width}}  ({origin})"
                   for name, value, origin in lines)
    return "\n".join(out)


def _shown(value: object) -> str:
    if value is None:
        return "off"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, int | float):
        return f"{value:g}" if isinstance(value, float) else str(value)
    return repr(value)


def init(args: argparse.Namespace) -> int:
    """``prefork init DIR``: write a small project there (``prefork.scaffold``)."""
    from prefork.scaffold import ScaffoldError, summary, write_project

    try:
        written = write_project(args.directory, args.name)
    except ScaffoldError as error:
        return _usage(f"init: {error}")
    print(summary(written))
    return EXIT_OK


def control(args: argparse.Namespace) -> int:
    """``prefork status|scale|stop|reload|check|hold|resume|reopen-logs``: one request to
    the running master's control socket; exit 0, or 1 (with one line) when no master
    answers or it refuses."""
    from prefork.client import (
        Refused,
        Unreachable,
        ask,
        find_socket,
        measure_memory,
        status_table,
    )

    command = "status" if args.command == "check" else args.command
    fields: dict[str, Any] = {}
    if command == "scale":
        fields = {"pool": args.pool, "n": args.n}
    elif command == "stop":
        fields = {"graceful": args.graceful}
    try:
        path = find_socket(args.socket, args.pidfile, args.config)
        reply = ask(path, command, timeout=args.timeout, **fields)
    except ConfigError as error:
        return _usage(f"{args.command}: {error}")
    except (Unreachable, Refused) as error:
        print(f"{PROG} {args.command}: {error}", file=sys.stderr)
        return EXIT_FAILED
    if args.command == "check":
        return _check(reply["status"])
    if command == "status":
        measure_memory(reply["status"])
        print(json.dumps(reply["status"], indent=2) if args.json
              else status_table(reply["status"]))
    elif command == "scale":
        print(f"pool {reply['pool']}: {reply['from']} -> {reply['to']} workers")
    else:
        print(f"{args.command}: done (master {reply['state']})")
    return EXIT_OK


def _check(status: dict[str, Any]) -> int:
    """``prefork check``: live (it answered) and ready, or why not."""
    master = status["master"]
    if master["ready"]:
        print(f"ready: master {master['name']} pid {master['pid']} {master['state']}")
        return EXIT_OK
    print(f"not ready: {'; '.join(master['not_ready'])}", file=sys.stderr)
    return EXIT_FAILED
