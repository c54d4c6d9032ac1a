"""Stand-ins for what the examples talk to (a mail server, a queue), so that they run as
they stand: each writes lines into files under ``$EXAMPLES_DIR`` (a temporary directory
when unset), one file per process.
"""

from __future__ import annotations

import itertools
import os
import tempfile
import time

DIR = os.environ.get("EXAMPLES_DIR") or os.path.join(tempfile.gettempdir(), "prefork-examples")


def _log(kind: str, text: str) -> None:
    os.makedirs(DIR, exist_ok=True)
    with open(os.path.join(DIR, f"{kind}.{os.getpid()}"), "a", encoding="utf-8") as file:
        file.write(text + "\n")


class Connection:
    """A connection to the mail server (a stand-in)."""

    def close(self) -> None:
        _log("closed", "bye")


def connect() -> Connection:
    return Connection()


_numbers = itertools.count(1)


def next_message() -> str:
    time.sleep(0.05)
    return f"message {next(_numbers)}"


def send(*args: object) -> None:
    """``send(connection, message)`` or ``send(message)``: the message is sent."""
    _log("sent", str(args[-1]))


def handle(message: object) -> None:
    _log("handled", str(message))


class Queue:
    """A queue that is empty every third look."""

    def __init__(self) -> None:
        self.looks = itertools.count(1)

    def get(self, timeout: float = 1.0) -> str | None:
        time.sleep(0.02)
        look = next(self.looks)
        return None if look % 3 == 0 else f"task {look}"

    def take(self) -> str:
        return next_message()

    def put_back(self, message: object) -> None:
        _log("put-back", str(message))


queue = Queue()
