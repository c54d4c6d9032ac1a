"""The ``prefork`` command.

Exit status: 0 when all went well, 2 on bad usage (one clear line on stderr, no
traceback). ``prefork run`` is reserved for running a pool of real processes, which needs
the POSIX adapter; this release does not have it yet and says so.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from prefork import __version__

PROG = "prefork"
EXIT_OK = 0
EXIT_USAGE = 2

RUN_UNAVAILABLE = f"{PROG}: 'run' needs the POSIX adapter, which is not in this release yet"


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
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    run = commands.add_parser(
        "run",
        help="run a pool of workers (needs the POSIX adapter: a later release)",
        description=(
            "Run a pool of workers: 'prefork run MODULE:ATTR [--workers N] ...' or "
            "'prefork run --config prefork.toml'. This needs the POSIX adapter, which "
            "comes in a later release; in this one the command exits with status 2."
        ),
    )
    run.add_argument(
        "arguments",
        nargs=argparse.REMAINDER,
        metavar="...",
        help="MODULE:ATTR and options (accepted, not used in this release)",
    )
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
        args = parser.parse_args(args_list)
    except SystemExit as exit_:  # argparse exits after --help, --version or an error
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
    if args.command == "run":
        print(RUN_UNAVAILABLE, file=sys.stderr)
        return EXIT_USAGE
    parser.print_help(sys.stderr)  # unreachable with the commands above; kept as a guard
    return EXIT_USAGE
