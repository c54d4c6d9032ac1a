"""Hello, pool: the smallest prefork program.

Run it either way, from the repository's root::

    prefork run examples.hello:Hello --workers 3
    python examples/hello.py

Then, from another terminal, try the signals on the master (its pid is in the log):
``kill -TTIN <pid>`` (one worker more), ``kill -TTOU <pid>`` (one fewer), ``kill -HUP
<pid>`` (replace them all), ``kill -QUIT <pid>`` (stop gracefully); Ctrl-C stops at once.
"""

from __future__ import annotations

import logging
import os
import time

import prefork


class Hello(prefork.Job):
    """Says hello once a second, from each worker."""

    def setup(self) -> None:
        # once per worker, after the fork: this is where connections are opened
        self.greeted = 0

    def perform(self) -> None:
        self.greeted += 1
        print(f"hello #{self.greeted} from worker {self.worker.slot} (pid {os.getpid()})",
              flush=True)
        time.sleep(1)

    def teardown(self) -> None:
        print(f"worker {self.worker.slot} says goodbye after {self.greeted} hellos", flush=True)


def main() -> int:
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s [%(process)d] %(message)s")
    return prefork.Master(Hello, workers=3, name="hello").run()


if __name__ == "__main__":
    raise SystemExit(main())
