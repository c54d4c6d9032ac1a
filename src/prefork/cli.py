"""The ``prefork`` command.

``prefork run MODULE:ATTR [--workers N] ...`` (or ``prefork run --config FILE``) runs a
pool until it is stopped: a Job class is instantiated, an instance or a function is
used as is. Every option of ``prefork.Master`` is a ``--kebab-case`` flag; flags win
over the config file. The log goes to stderr (or ``--log-file``), one line per
transition.

Exit status: 0 after a clean stop, 2 on bad usage or a bad option or job (one clear line
on stderr, no traceback), 1 otherwise (the master gave up on a crash loop, or crashed).
"""

from __future__ import annotations

import argparse
import gc
import logging
import math
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from prefork import __version__
from prefork.core.errors import ConfigError
from prefork.options import LOGGER_NAME, STRATEGIES, import_job, load_file

PROG = "prefork"
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

LOG_FORMAT = "%(asctime)s %(levelname)s [%(process)d] %(message)s"
LOG_LEVELS = ("debug", "info", "warning", "error")


class _UsageError(Exception):
    """Bad usage of ``prefork run``: one line on stderr, exit 2."""


class _RunParser(argparse.ArgumentParser):
    """The ``run`` sub-command's parser: an error is one line, not usage plus a line."""

    def error(self, message: str) -> NoReturn:
        raise _UsageError(f"{self.prog}: error: {message} (see '{self.prog} --help')")


def _count(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if math.isnan(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds")
    return value


def _optional(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """A value that may also be ``none`` (or ``off``): the option turned off."""

    def parse_optional(text: str) -> Any:
        return None if text.strip().lower() in ("none", "off") else parse(text)

    parse_optional.__name__ = parse.__name__
    return parse_optional


def _boolean(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"{text!r} is not true or false")


# (option, type, metavar, help); every option of prefork.Master but the Python-only ones
_RUN_OPTIONS: tuple[tuple[str, Callable[[str], Any], str, str], ...] = (
    ("workers", _count, "N", "workers to keep running (default 1)"),
    ("strategy", str, "|".join(STRATEGIES),
     "simple: perform in the worker; forking: each perform in a child (default simple)"),
    ("timeout", _optional(_seconds), "SECONDS",
     "kill a perform that shows no sign of life for this long (default off)"),
    ("setup_timeout", _optional(_seconds), "SECONDS", "how long setup() may take (default 60)"),
    ("graceful_timeout", _seconds, "SECONDS",
     "after a graceful stop, KILL stragglers after this long (default 30)"),
    ("kill_timeout", _seconds, "SECONDS",
     "after TERM or a timeout, KILL stragglers after this long (default 10)"),
    ("graceful_term", _boolean, "BOOL",
     "TERM stops gracefully, like QUIT (for systemd, Docker, Kubernetes)"),
    ("max_workers", _optional(_count), "N", "TTIN never goes above this"),
    ("max_performs", _optional(_count), "N", "a worker retires after this many performs"),
    ("restart_backoff", _seconds, "SECONDS", "delay before a repeatedly crashing slot respawns"),
    ("restart_backoff_max", _seconds, "SECONDS", "the back-off doubles up to this"),
    ("max_restarts", _optional(_count), "N",
     "give up (exit 1) after more crashes than this within --restart-period"),
    ("restart_period", _seconds, "SECONDS", "the window of --max-restarts"),
    ("name", str, "NAME", "process titles and log lines (default prefork)"),
    ("pidfile", str, "PATH", "write the master's pid here"),
    ("log_file", str, "PATH", "log here instead of stderr (USR1 reopens it)"),
)


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
    run.add_argument("--config", metavar="FILE",
                     help="a TOML file of options (and job = 'MODULE:ATTR'); HUP rereads it")
    for name, parse, metavar, text in _RUN_OPTIONS:
        run.add_argument(f"--{name.replace('_', '-')}", dest=name, type=parse,
                         metavar=metavar, default=None, help=text)
    run.add_argument("--log-level", choices=LOG_LEVELS, default=None,
                     help="the least severe level logged (default info)")
    return parser


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
        args, extra = parser.parse_known_args(args_list)
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
    parser.print_help(sys.stderr)  # unreachable with the commands above; kept as a guard
    return EXIT_USAGE


def _usage(message: str) -> int:
    print(f"{PROG}: {message}", file=sys.stderr)
    return EXIT_USAGE


def run(args: argparse.Namespace) -> int:
    """``prefork run``: build the master, run it, return its exit status."""
    from prefork.api import Master  # not at import time: --version stays fast

    options: dict[str, Any] = {}
    try:
        if args.config:
            options.update(load_file(args.config))
        for name, *_ in _RUN_OPTIONS:
            value = getattr(args, name)
            if value is not None:
                options[name] = value
        job_ref = args.job or options.pop("job", None)
        options.pop("job", None)
        if not job_ref:
            return _usage("run: give the job as MODULE:ATTR (or job = ... in --config FILE)")
        if not isinstance(job_ref, str):
            raise ConfigError("job", job_ref, "must be a string MODULE:ATTR")
        level = (args.log_level or "info").upper()
        logger = _configure_logging(level, options.get("log_file"))
        job = import_job(job_ref)
        master = Master(job, logger=logger, config_file=args.config, job_ref=job_ref,
                        **options)
    except ConfigError as error:
        return _usage(str(error))
    except TypeError as error:  # an option of the wrong kind in a config file
        return _usage(str(error))
    try:
        code = master.run()
    except ConfigError as error:  # found only when starting (a pid file in use...)
        return _usage(str(error))
    except KeyboardInterrupt:
        return EXIT_FAILED
    # The command exits next, and the interpreter's final collections walk every object:
    # frozen, they are skipped, and a stopped master is gone in a third of the time
    # (bench/: TERM to exit at 4 workers, 25 ms -> 10 ms).
    gc.freeze()
    return code


def _configure_logging(level: str, log_file: str | None) -> logging.Logger:
    """The ``prefork`` logger, to stderr: the master's ``log_file`` is fd 2 redirected.

    (Workers inherit fd 2, and faulthandler's stack dumps are written there too, so one
    handler on fd 2 serves every process and USR1 reopens one file.)
    """
    logger = logging.getLogger(LOGGER_NAME)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    return logger
