"""User-facing options: validated once, every bad value named."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest

from prefork.core.errors import ConfigError
from prefork.job import Job, WorkerContext, job_spec
from prefork.options import Hooks, Settings, build_settings, import_job, load_file


class Mailer(Job):
    def perform(self) -> None:
        pass


def perform() -> None:
    pass


def with_context(worker: WorkerContext) -> None:
    pass


def test_defaults_build_a_one_worker_simple_pool() -> None:
    settings = build_settings(perform)
    assert settings.pool.workers_of("default") == 1
    assert settings.strategy == "simple"
    assert settings.logger is logging.getLogger("prefork")


@pytest.mark.parametrize(
    ("options", "option"),
    [
        ({"strategy": "threads"}, "strategy"),
        ({"logger": object()}, "logger"),
        ({"before_fork": 3}, "before_fork"),
        ({"workers": -1}, "workers"),
        ({"timeout": 0}, "timeout"),
        ({"max_performs": 0}, "max_performs"),
        ({"pidfile": "/no/such/dir/x.pid"}, "pidfile"),
        ({"log_file": 7}, "log_file"),
        ({"wrokers": 2}, "wrokers"),
    ],
)
def test_a_bad_option_raises_config_error_naming_it(options, option) -> None:
    with pytest.raises(ConfigError) as error:
        build_settings(perform, **options)
    assert error.value.option == option
    assert str(error.value).startswith(f"{option}=")


def test_jobs_come_as_classes_instances_and_functions() -> None:
    assert isinstance(job_spec(Mailer).target, Mailer), "a class is instantiated"
    instance = Mailer()
    assert job_spec(instance).target is instance
    assert not job_spec(perform).takes_context
    assert job_spec(with_context).takes_context
    assert job_spec(lambda worker=None: None).takes_context is False


def test_a_bound_job_gets_the_worker_context() -> None:
    context = WorkerContext(slot=2, group="default", pid=123)
    job = Mailer()
    bound = job_spec(job).bind(context)
    assert job.worker is context
    assert bound.perform() is None
    seen = []
    job_spec(lambda worker: seen.append(worker)).bind(context).perform()
    assert seen == [context]


class NeedsArguments(Job):
    def __init__(self, queue: str) -> None:
        self.queue = queue


@pytest.mark.parametrize("job", [42, object(), NeedsArguments])
def test_what_is_not_a_job_raises_config_error(job) -> None:
    with pytest.raises(ConfigError) as error:
        job_spec(job)
    assert error.value.option == "job"


@pytest.mark.parametrize(
    ("ref", "why"),
    [("nope", "must be MODULE:ATTR"), ("no_such_module_xyz:Job", "cannot import"),
     ("logging:NoSuchThing", "has no attribute")],
)
def test_import_job_names_what_went_wrong(ref, why) -> None:
    with pytest.raises(ConfigError, match=why):
        import_job(ref)


def test_import_job_follows_dotted_attributes() -> None:
    assert import_job("logging:Logger.info") is logging.Logger.info


def test_config_files_take_kebab_or_snake_case_and_refuse_the_unknown(tmp_path) -> None:
    good = tmp_path / "good.toml"
    good.write_text('job = "m:J"\nworkers = 3\ngraceful-timeout = 5\nmax_performs = 10\n')
    assert load_file(str(good)) == {
        "job": "m:J", "workers": 3, "graceful_timeout": 5, "max_performs": 10,
    }
    bad = tmp_path / "bad.toml"
    bad.write_text("workerz = 3\n")
    with pytest.raises(ConfigError, match="workerz=3: is not a prefork option"):
        load_file(str(bad))
    python_only = tmp_path / "hooks.toml"
    python_only.write_text('before_fork = "x"\n')
    with pytest.raises(ConfigError, match="cannot be set in a config file"):
        load_file(str(python_only))
    broken = tmp_path / "broken.toml"
    broken.write_text("workers = [\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_file(str(broken))


def test_settings_and_hooks_are_immutable_and_the_logger_defaults_late() -> None:
    settings = build_settings(perform, workers=2)
    with pytest.raises(AttributeError):
        settings.strategy = "forking"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        settings.hooks.after_fork = print  # type: ignore[misc]
    assert settings == build_settings(perform, workers=2)
    bare = Settings(settings.job, settings.pool)
    assert bare.logger is logging.getLogger("prefork"), "omitted: the prefork logger"
    assert bare.hooks == Hooks() and bare.strategy == "simple" and bare.pidfile is None
    assert Settings(settings.job, settings.pool, logger=None).logger is None, "given: kept"


def test_importing_prefork_leaves_the_toml_parser_to_config_files() -> None:
    """tomllib is imported by load_file, not by ``import prefork`` (3 ms of every boot)."""
    code = "import sys, prefork; sys.exit('tomllib' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0
