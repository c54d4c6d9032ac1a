"""A job consuming a real queue: a directory of files.

Each file in ``QUEUE/new`` is one task. A worker claims a task by renaming it into
``QUEUE/claimed`` (a rename is atomic, so exactly one worker wins each file), processes
it, writes the result into ``QUEUE/done`` and removes the claim. Tasks claimed by a
worker that was killed are put back by the next worker's ``setup()``. A graceful stop
(QUIT) lets each worker finish the task in hand: nothing is lost and nothing is done
twice.

One command runs the demo (from the repository's root): it queues 40 tasks, runs 4
workers, and the pool stops by itself when the queue is empty::

    python examples/dirqueue.py

Or run it as a service on a queue of your own (tasks are files holding an integer)::

    DIRQUEUE=/var/spool/myqueue prefork run examples.dirqueue:DirQueue --workers 4
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import signal
import sys
import tempfile
import time

import prefork


class DirQueue(prefork.Job):
    """Take tasks from a directory; each task is a file holding a number."""

    def __init__(self, root: str | None = None, stop_when_empty: bool = False) -> None:
        self.root = root or os.environ.get("DIRQUEUE", "dirqueue")
        self.stop_when_empty = stop_when_empty
        for part in ("new", "claimed", "done"):
            os.makedirs(os.path.join(self.root, part), exist_ok=True)

    def path(self, part: str, name: str = "") -> str:
        return os.path.join(self.root, part, name)

    def setup(self) -> None:
        """Put back the tasks whose worker died (its pid is in the claim's name)."""
        for claim in os.listdir(self.path("claimed")):
            task, _, pid = claim.rpartition(".")
            if pid.isdigit() and not _alive(int(pid)):
                # FileNotFoundError: another worker put it back first
                with contextlib.suppress(FileNotFoundError):
                    os.rename(self.path("claimed", claim), self.path("new", task))

    def perform(self) -> None:
        task = self.claim()
        if task is None:
            if self.stop_when_empty and not os.listdir(self.path("claimed")):
                os.kill(os.getppid(), signal.SIGQUIT)  # the demo: empty queue, stop the pool
            time.sleep(0.2)  # nothing to do: look again soon (a perform should return)
            return
        name, claimed = task
        with open(claimed, encoding="ascii") as file:
            number = int(file.read().strip())
        digest = hashlib.sha256(str(number).encode())
        for _ in range(20_000):  # the "work"
            digest = hashlib.sha256(digest.digest())
        result = self.path("done", name + ".result")
        with open(result + ".tmp", "w", encoding="ascii") as file:
            file.write(f"{number} {digest.hexdigest()} by pid {os.getpid()}\n")
        os.replace(result + ".tmp", result)
        os.unlink(claimed)

    def claim(self) -> tuple[str, str] | None:
        """Rename one task into claimed/ (atomic: one winner per file), or None."""
        for name in sorted(os.listdir(self.path("new"))):
            claimed = self.path("claimed", f"{name}.{os.getpid()}")
            try:
                os.rename(self.path("new", name), claimed)
            except FileNotFoundError:
                continue  # another worker won this one
            return name, claimed
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def main() -> int:
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s [%(process)d] %(message)s")
    root = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="dirqueue-")
    queue = DirQueue(root, stop_when_empty=True)
    for n in range(40):
        with open(queue.path("new", f"task-{n:03}"), "w", encoding="ascii") as file:
            file.write(f"{n}\n")
    started = time.monotonic()
    code = prefork.Master(queue, workers=4, name="dirqueue").run()
    done = [name for name in os.listdir(queue.path("done")) if name.endswith(".result")]
    print(f"{len(done)} tasks done in {time.monotonic() - started:.2f}s; results in "
          f"{queue.path('done')}")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
