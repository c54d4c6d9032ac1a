"""The API without the run loop, Sisyphus-style; the e2e test reads what it prints."""

from __future__ import annotations

import signal
import sys
import time

import jobs

import prefork


def main() -> int:
    # a shell runs background jobs with QUIT and INT ignored: compare, don't assume SIG_DFL
    quit_before = signal.getsignal(signal.SIGQUIT)
    master = prefork.Master(jobs.Sleepy, workers=5, graceful_timeout=5,
                            strategy=sys.argv[1] if len(sys.argv) > 1 else "simple")
    first = master.start_worker()
    second = master.start_worker()
    print(f"started {first} {second}", flush=True)
    deadline = time.monotonic() + 5
    while not all((jobs.DIR / f"setup.{pid}").exists() for pid in (first, second)):
        assert time.monotonic() < deadline, "setup did not run"
        time.sleep(0.02)
    print(f"handlers untouched {signal.getsignal(signal.SIGQUIT) == quit_before}",
          flush=True)
    stopped = master.stop_worker()
    print(f"stopped {stopped}; live {' '.join(map(str, master.pids))}", flush=True)
    print(f"all stopped {master.stop_all()}; live {master.pids}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
