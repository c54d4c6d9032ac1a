"""User-facing options: one registry, validated once, every bad value named."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest

from prefork.core.core_options import CORE_OPTIONS
from prefork.core.errors import ConfigError
from prefork.job import Job, WorkerContext, job_spec
from prefork.options import (
    BY_NAME,
    OPTIONS,
    Pool,
    build_settings,
    environment_layer,
    given_layer,
    import_job,
    in_files,
    load_file,
    reread,
    settings_from,
)


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
    assert settings.group("default").strategy == "simple"
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
        ({"max_performs_jitter": -1}, "max_performs_jitter"),
        ({"max_memory": 0}, "max_memory"),
        ({"max_memory": 1.5}, "max_memory"),
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


def test_settings_are_immutable_and_the_logger_defaults_late() -> None:
    settings = build_settings(perform, workers=2)
    with pytest.raises(AttributeError):
        settings.pidfile = "x.pid"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        settings.group("default").strategy = "forking"  # type: ignore[misc]
    assert settings == build_settings(perform, workers=2)
    assert settings.logger is logging.getLogger("prefork"), "omitted: the prefork logger"
    assert settings.hook_functions == {} and settings.pidfile is None
    given = logging.getLogger("mine")
    assert build_settings(perform, logger=given).logger is given, "given: kept"


def test_the_registry_declares_each_option_once_with_the_cores_first() -> None:
    names = [option.name for option in OPTIONS]
    assert len(names) == len(set(names))
    assert OPTIONS[: len(CORE_OPTIONS)] == CORE_OPTIONS
    for option in OPTIONS:
        assert option.scope in ("master", "group") and option.doc, option.name
        assert option.kind.why_not(option.default) is None, option.name


def test_python_only_options_are_refused_in_a_file_by_name(tmp_path) -> None:
    refused = {name for name, option in BY_NAME.items() if not in_files(option)}
    assert refused == {"logger", "before_fork", "after_fork", "before_exit",
                       "on_worker_exit", "when_ready", "config_file"}
    config = tmp_path / "logger.toml"
    config.write_text('logger = "x"\n')
    with pytest.raises(ConfigError) as error:
        load_file(str(config))
    assert str(error.value) == f"logger='x': cannot be set in a config file (in {config})"


@pytest.mark.parametrize(
    ("text", "message"),
    [("workers = -1", "workers=-1: must be a whole number >= 0"),
     ('strategy = "threads"', "strategy='threads': must be one of simple, forking"),
     ('timeout = "5"', "timeout='5': must be a number of seconds")],
)
def test_a_bad_value_in_a_file_names_the_option_and_the_file(tmp_path, text, message) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(text + "\n")
    with pytest.raises(ConfigError) as error:
        load_file(str(config))
    assert str(error.value) == f"{message} (in {config})"


def test_keyword_options_win_over_the_file(tmp_path) -> None:
    config = tmp_path / "prefork.toml"
    config.write_text('job = "logging:getLogger"\nworkers = 3\ntimeout = 5\n')
    settings = build_settings(config_file=str(config), workers=2)
    assert settings.pool.workers_of("default") == 2, "the keyword wins"
    assert settings.pool.group("default").timeout == 5, "the file gives what was not given"
    assert settings.group("default").job.target is logging.getLogger
    assert build_settings(perform, config_file=config).group("default").job.target is perform


def test_a_job_is_needed_from_somewhere() -> None:
    with pytest.raises(ConfigError) as error:
        build_settings(workers=1)
    assert error.value.option == "job"
    assert "is missing" in str(error.value)


def test_each_group_has_its_own_strategy_and_job() -> None:
    settings = build_settings(
        perform, timeout=5,
        pools={"mail": Pool(workers=2, strategy="forking"), "sms": Pool(workers=1),
               "ctx": {"job": with_context, "max_performs": 3}},
    )
    assert [g.strategy for g in settings.groups] == ["forking", "simple", "simple"]
    assert settings.group("ctx").job.takes_context and not settings.group("sms").job.takes_context
    assert settings.pool.group("ctx").max_performs == 3
    assert settings.pool.group("mail").timeout == 5, "a top-level group option: every group"
    with pytest.raises(ConfigError) as error:
        build_settings(perform, pools={"mail": Pool(strategy="threads")})
    assert str(error.value).startswith("pool.mail.strategy='threads': must be one of")
    with pytest.raises(ConfigError) as error:
        build_settings(perform, pools={"mail": Pool(42)})
    assert error.value.option == "pool.mail.job"


def test_a_reread_keeps_what_was_given_and_what_needs_a_restart(tmp_path) -> None:
    config = tmp_path / "prefork.toml"
    config.write_text('workers = 3\nstrategy = "forking"\n')
    running = build_settings(perform, config_file=str(config), workers=1)
    config.write_text(f'workers = 4\nmax_performs = 9\npidfile = "{tmp_path}/x.pid"\n')
    fresh, notes = reread(running, str(config))
    assert fresh.pool.workers_of("default") == 1, "the keyword still wins"
    assert fresh.pool.group("default").max_performs == 9
    assert fresh.group("default").strategy == "simple", "gone from the file: the default"
    assert fresh.pidfile is None, "a pid file needs a restart"
    assert fresh.group("default").job is running.group("default").job, "not rebuilt"
    assert notes == [f"pidfile changed ({config}): it needs a restart, so None stays in force"]
    again, notes_again = reread(fresh, str(config))
    assert again.pidfile is None and len(notes_again) == 1, "said on every HUP it differs"
    config.write_text("workers = [\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        reread(fresh, str(config))


def test_importing_prefork_leaves_the_toml_parser_to_config_files() -> None:
    """tomllib is imported by load_file, not by ``import prefork`` (3 ms of every boot)."""
    code = "import sys, prefork; sys.exit('tomllib' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0


# --- pools, and where each value comes from ------------------------------------------------------

TWO_POOLS = '''
graceful_timeout = 5
timeout = 9

[pool.mail]
job = "pool_jobs:mail"
workers = 2
strategy = "forking"

[pool."high,default"]
job = "pool_jobs:Queue('high', 'default')"
workers = 1
timeout = 3
'''


@pytest.fixture
def pool_jobs(tmp_path, monkeypatch) -> None:
    """``pool_jobs``, the module the two-pool file names."""
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "pool_jobs.py").write_text(
        "def mail():\n    pass\n\n\n"
        "class Queue:\n    def __init__(self, *queues):\n        self.queues = queues\n\n"
        "    def perform(self):\n        pass\n"
    )


@pytest.mark.usefixtures("pool_jobs")
def test_a_file_names_pools_each_with_its_job_count_and_options(tmp_path) -> None:
    config = tmp_path / "pools.toml"
    config.write_text(TWO_POOLS)
    settings = build_settings(config_file=str(config))
    assert settings.pool.group_names == ("mail", "high,default"), "in the file's order"
    assert settings.pool.workers_of("mail") == 2 and settings.pool.workers_of("high,default") == 1
    assert settings.group("mail").job.target.__name__ == "mail"
    assert settings.group("mail").strategy == "forking"
    queue = settings.group("high,default").job.target
    assert queue.queues == ("high", "default"), "MODULE:ATTR(ARGS)"
    assert settings.pool.group("high,default").timeout == 3, "a pool's own value wins"
    assert settings.pool.group("mail").timeout == 9, "a top-level group option: every pool"
    assert settings.pool.group("mail").graceful_timeout == 5
    origins = {(pool, name): origin for pool, name, _, origin in settings.effective()}
    assert origins["mail", "workers"] == f"{config} [pool.mail]"
    assert origins["high,default", "timeout"] == f'{config} [pool."high,default"]'
    assert origins["mail", "timeout"] == str(config)
    assert origins["mail", "max_performs"] == "default"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[pool.mail]\njob = "m:J"\nworkerz = 2\n',
         "pool.mail.workerz=2: is not a prefork option"),
        ('[pool."a,b"]\njob = "m:J"\ntimeout = 0\n',
         "pool.\"a,b\".timeout=0: must be a finite number of seconds > 0"),
        ('[pool.mail]\njob = "m:J"\npidfile = "x.pid"\n',
         "pool.mail.pidfile='x.pid': is a master option: set it at the top level"),
        ('pool = 3\n', "pool=3: must be one table per pool, [pool.NAME]"),
        ('[pool.mail]\njob = "logging:NoSuch"\n',
         "pool.mail.job='logging:NoSuch': logging has no attribute NoSuch"),
        ('[pool.mail]\nworkers = 1\n', "pool.mail.job=None: is missing"),
        ('[pool.mail]\njob = "logging:getLogger"\nworkers = 3\nmax_workers = 2\n',
         "pool.mail.workers=3: exceeds max_workers (2)"),
        ('[pool.mail]\njob = "logging:getLogger"\nmax_workers = 4\nmin_spare = 3\n'
         'max_spare = 2\n', "pool.mail.max_spare=2: must be >= min_spare (3)"),
        ('[pool.mail]\njob = "logging:getLogger"\nmin_spare = 1\n',
         "pool.mail.min_spare=1: needs max_workers"),
        ('[pool.mail]\njob = "logging:getLogger"\nworkers = 1\nmin_workers = 2\n',
         "pool.mail.workers=1: is below min_workers (2)"),
        ('[pool.mail]\njob = "logging:getLogger"\nmax_restarts = -1\n',
         "pool.mail.max_restarts=-1: must be a whole number >= 0"),
    ],
)
@pytest.mark.usefixtures("pool_jobs")
def test_a_bad_pool_names_the_file_the_pool_and_the_key(tmp_path, text, message) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(text)
    with pytest.raises(ConfigError) as error:
        build_settings(config_file=str(config))
    assert message in str(error.value)
    assert str(error.value).endswith(f"(in {config})"), str(error.value)
    assert "\n" not in str(error.value)


def test_pools_in_python_take_the_masters_options_they_leave_out() -> None:
    settings = build_settings(timeout=4, pools={
        "mail": Pool(perform, workers=3, timeout=2),
        "sms": Pool(with_context),
    })
    assert settings.pool.group_names == ("mail", "sms")
    assert settings.pool.group("mail").timeout == 2 and settings.pool.group("sms").timeout == 4
    assert settings.pool.workers_of("sms") == 1
    assert settings.group("sms").job.takes_context


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Pool(perform, pidfile="x"), "pidfile='x': is a master option"),
        (lambda: Pool(perform, wrokers=1), "wrokers=1: is not a prefork option"),
        (lambda: build_settings(pools={}), "pools={}: must map pool names"),
        (lambda: build_settings(pools={"a": 3}), "pools['a']=3: must be a prefork.Pool"),
        (lambda: build_settings(pools={"a\n": Pool(perform)}), "a group name is"),
    ],
)
def test_bad_pools_in_python_raise_config_error(make, message) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("(", r"\(")):
        make()


@pytest.mark.usefixtures("pool_jobs")
def test_pools_are_named_in_one_place(tmp_path) -> None:
    config = tmp_path / "pools.toml"
    config.write_text(TWO_POOLS)
    with pytest.raises(ConfigError, match=r"are named by keyword and by .*name them in one"):
        build_settings(config_file=str(config), pools={"x": Pool(perform)})


@pytest.mark.usefixtures("pool_jobs")
def test_precedence_flags_then_environment_then_file_then_defaults(tmp_path) -> None:
    config = tmp_path / "pools.toml"
    config.write_text(TWO_POOLS)
    flags = given_layer({"config_file": str(config), "strategy": "simple"}, "flag",
                        {"strategy": "--strategy", "config_file": "-c"})
    env = environment_layer({"PREFORK_STRATEGY": "forking", "PREFORK_TIMEOUT": "7",
                             "PREFORK_MAX_PERFORMS": "off", "PATH": "/bin"})
    settings = settings_from([flags, env])
    for pool in ("mail", "high,default"):
        assert settings.group(pool).strategy == "simple", "the flag wins over all"
        assert settings.pool.group(pool).timeout == 7, "the environment wins over the file"
    assert settings.pool.group("mail").graceful_timeout == 5, "the file over the defaults"
    origins = {(pool, name): origin for pool, name, _, origin in settings.effective()}
    assert origins["mail", "strategy"] == "--strategy"
    assert origins["mail", "timeout"] == "PREFORK_TIMEOUT"
    assert origins[None, "config_file"] == "-c"
    config.write_text(TWO_POOLS.replace("workers = 2", "workers = 5"))
    fresh, notes = reread(settings, str(config))
    assert fresh.pool.workers_of("mail") == 5 and fresh.group("mail").strategy == "simple"
    assert fresh.pool.group("mail").timeout == 7, "every HUP applies the same order"
    assert notes == []


def test_a_bad_environment_variable_is_named() -> None:
    with pytest.raises(ConfigError) as error:
        environment_layer({"PREFORK_WORKERS": "many"})
    assert str(error.value) == "PREFORK_WORKERS='many': 'many' is not a whole number"
    with pytest.raises(ConfigError) as error:
        environment_layer({"PREFORK_WORKERS": "-2"})
    assert str(error.value) == "PREFORK_WORKERS=-2: must be a whole number >= 0"
    env = environment_layer({"PREFORK_WORKERS": "3", "PREFORK_MAX_WORKERS": "2"})
    with pytest.raises(ConfigError) as error:
        settings_from([given_layer({"job": perform}), env])
    assert str(error.value) == "workers=3: exceeds max_workers (2) (from PREFORK_WORKERS)"


@pytest.mark.usefixtures("pool_jobs")
def test_a_hup_adds_and_removes_pools(tmp_path) -> None:
    config = tmp_path / "pools.toml"
    config.write_text(TWO_POOLS)
    running = build_settings(config_file=str(config))
    config.write_text('[pool.sms]\njob = "logging:getLogger"\nworkers = 4\n')
    fresh, notes = reread(running, str(config))
    assert fresh.pool.group_names == ("sms",) and fresh.pool.workers_of("sms") == 4
    assert notes == []


def test_a_hup_imports_a_named_job_afresh_unless_preloaded(tmp_path, monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    module = tmp_path / "hup_deploys_code.py"
    module.write_text("def perform():\n    return 1\n")
    config = tmp_path / "prefork.toml"
    config.write_text('job = "hup_deploys_code:perform"\n')
    running = build_settings(config_file=str(config))
    assert running.group("default").job.target() == 1
    module.write_text("def perform():\n    return 22\n")  # another size: no stale bytecode
    fresh, _ = reread(running, str(config))
    assert fresh.group("default").job.target() == 22, "new code, for the new workers"
    preloaded = build_settings(config_file=str(config), preload=True)
    module.write_text("def perform():\n    return 333\n")
    kept, notes = reread(preloaded, str(config))
    assert kept.group("default").job is preloaded.group("default").job
    assert notes == ["preload is on: the jobs' code is not reloaded (restart the master to "
                     "run new code)"]
    module.write_text("def perform(:\n")
    with pytest.raises(ConfigError, match=r"^job='hup_deploys_code:perform': importing "
                                          r"hup_deploys_code raised SyntaxError"):
        reread(fresh, str(config))


def test_at_start_a_job_module_imported_already_is_used_as_is(tmp_path, monkeypatch) -> None:
    """Master("myapp.jobs:Mailer") from inside myapp must not import myapp a second time."""
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "imported_once.py").write_text("def perform():\n    pass\n")
    import imported_once  # type: ignore[import-not-found]

    settings = build_settings("imported_once:perform")
    assert settings.group("default").job.target is imported_once.perform
    assert sys.modules["imported_once"] is imported_once


def test_a_file_named_job_puts_its_directory_on_the_path_once(tmp_path) -> None:
    (tmp_path / "by_path.py").write_text("def perform():\n    pass\n")
    ref = f"{tmp_path}/by_path.py:perform"
    import_job(ref)
    import_job(ref, fresh=True)
    assert sys.path.count(str(tmp_path)) == 1
    sys.path.remove(str(tmp_path))


@pytest.mark.parametrize(
    ("ref", "expected"),
    [("logging:getLogger('a.b')", "a.b"), ("logging:getLogger(name='c')", "c")],
)
def test_a_job_can_be_called_with_literal_arguments(ref, expected) -> None:
    assert import_job(ref).name == expected


@pytest.mark.parametrize("ref", ["logging:getLogger(open('x'))", "logging:getLogger(**{})",
                                 "logging:getLogger(1, 2, 3"])
def test_a_call_with_more_than_literals_is_refused(ref) -> None:
    with pytest.raises(ConfigError, match=r"must be Python literals|must be MODULE:ATTR"):
        import_job(ref)


def test_max_memory_needs_psutil_and_says_how_to_get_it(monkeypatch, tmp_path) -> None:
    import prefork.options as options

    monkeypatch.setattr(options, "_HAVE_PSUTIL", False)
    build_settings(perform, max_performs=5, max_performs_jitter=2)  # these need nothing
    with pytest.raises(ConfigError) as error:
        build_settings(perform, max_memory=300)
    assert str(error.value).startswith("max_memory=300: needs psutil")
    assert "prefork[memory]" in str(error.value)
    config = tmp_path / "pools.toml"
    config.write_text('[pool.mail]\njob = "tests:J"\nmax_memory = 64\n')
    with pytest.raises(ConfigError, match=r"max_memory=64: needs psutil"):
        build_settings(perform, config_file=str(config))


def test_recycling_options_come_from_flags_files_and_keywords(tmp_path) -> None:
    settings = build_settings(perform, max_performs=100, max_performs_jitter=20,
                              max_memory=256)
    group = settings.pool.group("default")
    assert (group.max_performs, group.max_performs_jitter, group.max_memory) == (100, 20, 256)
    config = tmp_path / "prefork.toml"
    config.write_text("max-performs-jitter = 7\nmax_memory = 128\n")
    group = build_settings(perform, config_file=str(config)).pool.group("default")
    assert (group.max_performs_jitter, group.max_memory) == (7, 128)
