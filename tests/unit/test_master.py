"""The public Master's wiring that needs no fork: the options its workers are given."""

from __future__ import annotations

from prefork.api import Master
from prefork.core.events import Reload, Signal
from prefork.core.signals import Sig
from prefork.options import build_settings


def perform() -> None:
    pass


def test_the_workers_options_are_made_once_per_settings() -> None:
    master = Master(perform, workers=1, max_performs=5)
    options = master._worker_options()
    assert master._worker_options() is options, "made once, not in every worker"
    assert (options.max_performs, options.strategy) == (5, "simple")
    master.settings = build_settings(perform, workers=1, max_performs=7, strategy="forking")
    fresh = master._worker_options()
    assert (fresh.max_performs, fresh.strategy) == (7, "forking")


def test_a_reloaded_config_file_reaches_the_workers_forked_after_it(tmp_path) -> None:
    config = tmp_path / "prefork.toml"
    config.write_text("workers = 1\nmax_performs = 5\n")
    master = Master(perform, workers=1, max_performs=5, config_file=str(config))
    assert master._worker_options().max_performs == 5
    config.write_text("workers = 1\nmax_performs = 7\n")
    assert isinstance(master._translate_signal(Signal(Sig.HUP)), Reload)
    assert master._options_of is master.settings, "made in the master, before any fork"
    assert master._worker_options().max_performs == 7
