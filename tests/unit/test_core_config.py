"""PoolConfig: every bad value raises ConfigError naming the option."""

from __future__ import annotations

import pytest

from prefork.core import ConfigError, GroupConfig, PoolConfig, backoff_delay


@pytest.mark.parametrize(
    ("options", "option"),
    [
        ({"workers": -1}, "workers"),
        ({"workers": 1.5}, "workers"),
        ({"workers": True}, "workers"),
        ({"timeout": 0}, "timeout"),
        ({"timeout": -3}, "timeout"),
        ({"timeout": "5"}, "timeout"),
        ({"timeout": float("nan")}, "timeout"),
        ({"setup_timeout": float("inf")}, "setup_timeout"),
        ({"graceful_timeout": -1}, "graceful_timeout"),
        ({"kill_timeout": -0.5}, "kill_timeout"),
        ({"graceful_term": "yes"}, "graceful_term"),
        ({"max_workers": -2}, "max_workers"),
        ({"workers": 5, "max_workers": 4}, "workers"),
        ({"max_performs": 0}, "max_performs"),
        ({"max_restarts": -1}, "max_restarts"),
        ({"restart_period": 0}, "restart_period"),
        ({"restart_backoff": 0}, "restart_backoff"),
        ({"restart_backoff": 2, "restart_backoff_max": 1}, "restart_backoff_max"),
        ({"name": ""}, "name"),
        ({"wokers": 2}, "wokers"),
        ({"groups": {"bad name": 1}}, "groups"),
        ({"groups": {"mail": -1}}, "groups.mail"),
        ({"groups": {}}, "groups"),
        ({"groups": {"a": 1}, "workers": 2}, "groups"),
    ],
)
def test_bad_values_name_the_option(options: dict, option: str) -> None:
    with pytest.raises(ConfigError) as caught:
        PoolConfig.of(**options)
    assert caught.value.option == option
    assert str(caught.value).startswith(f"{option}=")


def test_duplicate_group_names_are_refused() -> None:
    with pytest.raises(ConfigError, match="twice"):
        PoolConfig(groups=(GroupConfig("a", 1), GroupConfig("a", 2)))


def test_groups_keep_their_order_and_counts() -> None:
    config = PoolConfig.of(groups={"mail": 2, "sms": 0})
    assert config.group_names == ("mail", "sms")
    assert config.workers_of("mail") == 2
    assert config.workers_of("sms") == 0
    assert config.workers_of("absent") == 0


def test_defaults_and_with_options() -> None:
    config = PoolConfig.of(workers=3)
    assert config.groups == (GroupConfig("default", 3),)
    assert config.timeout is None
    changed = config.with_options(timeout=5)
    assert changed.timeout == 5 and config.timeout is None
    with pytest.raises(ConfigError):
        config.with_options(timeout=-1)


def test_backoff_is_immediate_then_exponential_then_capped() -> None:
    config = PoolConfig.of(restart_backoff=0.5, restart_backoff_max=3)
    delays = [backoff_delay(n, config) for n in range(1, 7)]
    assert delays == [0.0, 0.5, 1.0, 2.0, 3.0, 3.0]
