"""The public Master's wiring that needs no fork: its keywords, and what its parts get."""

from __future__ import annotations

import inspect
import logging

import pytest

import prefork
from prefork.api import Master, _LiveSettings, runtime_options
from prefork.core.errors import ConfigError
from prefork.core.snapshot import Snapshot
from prefork.hooks import MasterView, master_hooks
from prefork.options import OPTIONS, build_settings


def perform() -> None:
    pass


def test_an_unknown_keyword_raises_config_error_naming_it() -> None:
    with pytest.raises(ConfigError) as error:
        Master(perform, wrokers=2)
    assert str(error.value) == "wrokers=2: is not a prefork option"


def test_the_signature_and_docstring_list_every_option() -> None:
    parameters = inspect.signature(Master).parameters
    assert next(iter(parameters)) == "job"
    doc = inspect.getdoc(Master) or ""
    for option in OPTIONS:
        if option.name != "job":
            assert parameters[option.name].default == option.default
            assert f"``{option.name}``" in doc


def test_pools_are_a_documented_keyword() -> None:
    parameters = inspect.signature(Master).parameters
    assert parameters["pools"].default is None
    assert "prefork.Pool(Mailer, workers=4)" in (inspect.getdoc(Master) or "")
    master = Master(pools={"mail": prefork.Pool(perform, workers=0)})
    assert master.settings.pool.group_names == ("mail",)


def test_a_job_can_be_named_by_module_and_attribute() -> None:
    master = prefork.Master("logging:getLogger", workers=0)
    assert master.settings.group("default").job.target is logging.getLogger


def test_each_group_gets_its_own_runtime_options() -> None:
    settings = build_settings(
        perform, name="mail", pools={"a": prefork.Pool(workers=1, strategy="forking",
                                                       max_performs=5, timeout=3,
                                                       max_performs_jitter=2, max_memory=64),
                                     "b": prefork.Pool(workers=2)},
    )
    a, b = runtime_options(settings, "a"), runtime_options(settings, "b")
    assert (a.strategy, a.recycle_after, a.stamp_performs) == ("forking", 5, True)
    assert (a.recycle_jitter, a.max_memory) == (2, 64)
    assert (b.strategy, b.recycle_after, b.stamp_performs) == ("simple", None, False)
    # a pool recycles: its workers ask for a replacement, they never stop by themselves
    assert a.max_performs is None and b.max_performs is None
    assert a.name == b.name == "mail"


def test_the_workers_options_are_made_once_per_settings(tmp_path) -> None:
    config = tmp_path / "prefork.toml"
    config.write_text("workers = 1\nmax_performs = 5\n")
    live = _LiveSettings(build_settings(perform, config_file=str(config)), logging.getLogger())
    made = live.runtime["default"]
    assert made.recycle_after == 5
    assert live.runtime["default"] is made, "made once, not in every worker"
    config.write_text('workers = 2\nmax_performs = 7\nstrategy = "forking"\n')
    pool = live.read_config(str(config))
    assert pool.workers_of("default") == 2
    fresh = live.runtime["default"]
    assert (fresh.recycle_after, fresh.strategy) == (7, "forking"), "made in the master"


def test_a_bad_config_file_changes_nothing(tmp_path) -> None:
    config = tmp_path / "prefork.toml"
    config.write_text("workers = 1\n")
    live = _LiveSettings(build_settings(perform, config_file=str(config)), logging.getLogger())
    before = (live.settings, live.runtime)
    config.write_text("workers = -1\n")
    with pytest.raises(ConfigError, match="workers=-1"):
        live.read_config(str(config))
    assert (live.settings, live.runtime) == before


def test_the_loop_reads_config_files_through_the_live_settings(tmp_path) -> None:
    config = tmp_path / "prefork.toml"
    config.write_text("workers = 1\n")
    master = Master(perform, config_file=str(config))
    loop = master._build("run")
    assert master._live is not None and loop.read_config == master._live.read_config
    assert "when_ready" not in loop.hooks, "only the hooks that are set"
    loop.close()


def test_when_ready_is_handed_a_snapshot_not_the_master() -> None:
    seen: list[object] = []
    settings = build_settings(perform, when_ready=seen.append, before_fork=print,
                              after_fork=print)
    picture = Snapshot("running", (("default", 1),), (), 0)
    hooks = master_hooks(settings.hook_functions, "prefork", lambda: picture)
    assert set(hooks) == {"when_ready", "before_fork"}, "after_fork runs in the worker"
    hooks["when_ready"]()
    [view] = seen
    assert isinstance(view, MasterView) and view.snapshot is picture
    assert view.name == "prefork" and view.pids() == [] and view.state == "running"


def test_the_workers_get_their_groups_timeouts_and_back_off() -> None:
    settings = build_settings(perform, graceful_term=True, pools={
        "a": prefork.Pool(graceful_timeout=7, soft_timeout=2.5, restart_backoff=0.3,
                          restart_backoff_max=9),
        "b": prefork.Pool(),
    })
    a, b = runtime_options(settings, "a"), runtime_options(settings, "b")
    assert (a.graceful_timeout, a.soft_timeout, a.graceful_term) == (7, 2.5, True)
    assert (a.restart_backoff, a.restart_backoff_max) == (0.3, 9)
    assert (b.graceful_timeout, b.soft_timeout, b.restart_backoff) == (30.0, None, 0.1)
