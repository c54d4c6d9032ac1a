"""resque-pool's config in prefork's file: a pool table with ``queues`` (or a
``redis_url``) and no ``job`` runs ``prefork.rq.pool_job`` (no Redis needed here)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from prefork.core.errors import ConfigError
from prefork.options import build_settings, reread

pytest.importorskip("rq")

from prefork.rq import RQJob

SRC = Path(__file__).resolve().parents[2] / "src"

FILE = """\
redis_url = "redis://redis.example:6379/2"

[pool."high,default"]
workers = 2

[pool.mail]
queues = ["mail", "low"]
redis_url = "redis://mail.example:6379/0"
burst = true

[pool.plain]
job = "logging:getLogger"
"""


def write(tmp_path: Path, text: str = FILE) -> Path:
    path = tmp_path / "pools.toml"
    path.write_text(text)
    return path


def rq_job(settings, pool: str) -> RQJob:
    job = settings.group(pool).job.target
    assert isinstance(job, RQJob), job
    return job


def test_pool_tables_without_a_job_are_rq_pools(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    settings = build_settings(config_file=write(tmp_path))
    high = rq_job(settings, "high,default")
    assert (high.queues, high.redis_url, high.burst) == (
        ["high", "default"], "redis://redis.example:6379/2", False), "the file's redis_url"
    mail = rq_job(settings, "mail")
    assert (mail.queues, mail.redis_url, mail.burst) == (
        ["mail", "low"], "redis://mail.example:6379/0", True), "the pool's own wins"
    assert not isinstance(settings.group("plain").job.target, RQJob), "a job is a job"
    assert settings.pool.group("high,default").workers == 2


def test_redis_url_from_the_environment_sits_between_the_pool_and_the_file(
        tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://env.example:6379/5")
    settings = build_settings(config_file=write(tmp_path))
    assert rq_job(settings, "high,default").redis_url == "redis://env.example:6379/5"
    assert rq_job(settings, "mail").redis_url == "redis://mail.example:6379/0"


def test_queues_as_a_comma_string_and_no_redis_url_anywhere(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    path = write(tmp_path, '[pool.q]\nqueues = "a, b"\n\n[pool.other]\njob = '
                           '"logging:getLogger"\n')
    settings = build_settings(config_file=path)
    job = rq_job(settings, "q")
    assert (job.queues, job.redis_url) == (["a", "b"], "redis://localhost:6379/0")
    with pytest.raises(ConfigError, match="job=None: is missing"):
        build_settings(config_file=write(tmp_path, "[pool.nothing]\nworkers = 1\n"))


def test_bad_rq_keys_are_refused_by_name(tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"pool\.a\.queues=\[\]: must be queue names"):
        build_settings(config_file=write(tmp_path, "[pool.a]\nqueues = []\n"))
    with pytest.raises(ConfigError, match=r"redis_url='localhost': must be a Redis URL"):
        build_settings(config_file=write(tmp_path, 'redis_url = "localhost"\n[pool.a]\n'
                                                   'workers = 1\n'))
    with pytest.raises(ConfigError, match=r"pool\.a\.queues=.*is for an RQ pool, which has "
                                          r"no job \(in "):
        build_settings(config_file=write(tmp_path, '[pool.a]\njob = "logging:getLogger"\n'
                                                   'queues = "x"\n'))


def test_without_rq_a_clear_error_names_the_pool_and_the_file(tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "prefork.rq", None)  # as if rq were not installed
    path = write(tmp_path)
    with pytest.raises(ConfigError) as caught:
        build_settings(config_file=path)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith('redis_url=') or message.startswith('pool.'), message
    assert "pip install 'prefork[rq]'" in message and str(path) in message


def test_a_queues_change_on_hup_is_a_job_change(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    path = write(tmp_path)
    running = build_settings(config_file=path)
    path.write_text(FILE.replace('["mail", "low"]', '["mail"]'))
    fresh, notes = reread(running, str(path))
    assert notes == []
    assert rq_job(fresh, "mail").queues == ["mail"]
    assert rq_job(fresh, "mail") is not rq_job(running, "mail")
    path.write_text(FILE.replace("redis.example:6379/2", "redis.example:6379/3"))
    fresh, _ = reread(fresh, str(path))
    assert rq_job(fresh, "high,default").redis_url == "redis://redis.example:6379/3"


def test_check_config_shows_the_rq_pool_jobs(tmp_path) -> None:
    path = write(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "prefork", "run", "-c", str(path), "--check-config"],
        capture_output=True, text=True, env={"PYTHONPATH": str(SRC), "PATH": ""}, timeout=30)
    assert done.returncode == 0, done.stderr
    assert ("job                 = \"prefork.rq:pool_job('high,default', "
            "queues=['high', 'default'], redis_url=None, burst=False, "
            "top_redis_url='redis://redis.example:6379/2')\"") in done.stdout
    assert "pool_job('mail', queues=['mail', 'low'], redis_url='redis://mail.example:6379/0'"\
           ", burst=True, top_redis_url=None)" in done.stdout
