"""resque-pool's config in prefork's file: ``prefork run -c FILE`` with two RQ pool
tables (no ``job``: the queues from the pool's name, or ``queues``), against a real
Redis server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import HERE, SRC, wait_until
from rq.registry import FailedJobRegistry
from test_rq_pools import enqueue, runs

pytestmark = pytest.mark.timeout(60)


def test_prefork_run_with_two_rq_pool_tables(connection, redis_server, tmp_path) -> None:
    config = tmp_path / "pools.toml"
    config.write_text(f"""\
redis_url = "{redis_server.url}"

[pool."high,default"]
workers = 2

[pool.mail]
queues = ["mail", "low"]
workers = 1
strategy = "forking"
""")
    log = tmp_path / "master.log"
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), str(HERE),
                                                      env.get("PYTHONPATH")]))
    with open(log, "wb") as out:
        master = subprocess.Popen([sys.executable, "-m", "prefork", "run", "-c", str(config)],
                                  stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                  env=env, start_new_session=True)
    try:
        ids = (enqueue(connection, "high", 30) + enqueue(connection, "default", 30)
               + enqueue(connection, "mail", 20) + enqueue(connection, "low", 20))
        wait_until(lambda: len(set(runs(connection)) & set(ids)) == len(ids), 30,
                   f"every job done; log:\n{log.read_text(errors='replace')[-3000:]}")
        assert set(runs(connection).values()) == {1}

        # a KILLed worker's job is failed by the master within a second (the job's own
        # on_worker_exit, wired by the file's RQ pool)
        [stuck] = enqueue(connection, "high", 1, func="rq_tasks.nap", kwargs={"seconds": 30})
        pid = int(wait_until(lambda: connection.hget("running", stuck), 10, "the nap to run"))
        os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        failed = FailedJobRegistry("high", connection=connection)
        wait_until(lambda: stuck in failed.get_job_ids(), 1.0, "the killed job to fail")
        print(f"failed {time.monotonic() - killed:.3f}s after the KILL")

        master.send_signal(signal.SIGQUIT)
        assert master.wait(20) == 0, log.read_text(errors="replace")[-3000:]
    finally:
        if master.poll() is None:
            master.kill()
            master.wait(5)
    text = log.read_text(errors="replace")
    assert "Traceback" not in text, text[-3000:]
