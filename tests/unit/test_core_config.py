"""PoolConfig: every bad value raises ConfigError naming the option."""

from __future__ import annotations

import pytest

from prefork.core import ConfigError, GroupConfig, PoolConfig, backoff_delay
from prefork.core.core_options import Count, FilePath, Flag, Kind, Seconds


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
        ({"groups": {"mail": {"workers": 1, "max_restarts": -1}}}, "groups.mail.max_restarts"),
        ({"min_workers": -1}, "min_workers"),
        ({"min_workers": 3, "max_workers": 2, "workers": 2}, "min_workers"),
        ({"workers": 1, "min_workers": 2}, "workers"),
        ({"groups": {"mail": 1}, "min_workers": 2}, "groups.mail"),
        ({"min_spare": 1}, "min_spare"),
        ({"min_spare": 2, "max_spare": 1, "max_workers": 4}, "max_spare"),
        ({"groups": {"mail": {"workers": 1, "min_spare": 3, "max_spare": 2,
                              "max_workers": 4}}}, "groups.mail.max_spare"),
        ({"idle_timeout": 0}, "idle_timeout"),
        ({"scale_interval": 0}, "scale_interval"),
        ({"restart_backoff": 0}, "restart_backoff"),
        ({"restart_backoff": 2, "restart_backoff_max": 1}, "restart_backoff_max"),
        ({"name": ""}, "name"),
        ({"wokers": 2}, "wokers"),
        ({"groups": {"bad\tname": 1}}, "groups"),
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
    with pytest.raises(ConfigError) as caught:
        PoolConfig(groups=(GroupConfig("a", 1), GroupConfig("a", 2)))
    assert str(caught.value) == "groups='a': names a group twice"
    assert (caught.value.option, caught.value.value) == ("groups", "a")


def test_groups_keep_their_order_and_counts() -> None:
    config = PoolConfig.of(groups={"mail": 2, "sms": 0})
    assert config.group_names == ("mail", "sms")
    assert config.workers_of("mail") == 2
    assert config.workers_of("sms") == 0
    assert config.workers_of("absent") == 0


def test_defaults_and_with_options() -> None:
    config = PoolConfig.of(workers=3)
    assert config.groups == (GroupConfig("default", 3),)
    assert config.groups[0].timeout is None
    changed = config.with_options(timeout=5)
    assert changed.groups[0].timeout == 5 and config.groups[0].timeout is None
    with pytest.raises(ConfigError):
        config.with_options(timeout=-1)


def test_backoff_is_immediate_then_exponential_then_capped() -> None:
    config = PoolConfig.of(restart_backoff=0.5, restart_backoff_max=3)
    delays = [backoff_delay(n, config.groups[0]) for n in range(1, 7)]
    assert delays == [0.0, 0.5, 1.0, 2.0, 3.0, 3.0]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"workers": -1}, "workers=-1: must be a whole number >= 0"),
        ({"max_performs": 0}, "max_performs=0: must be a whole number >= 1"),
        ({"timeout": "5"}, "timeout='5': must be a number of seconds"),
        ({"timeout": 0}, "timeout=0: must be a finite number of seconds > 0"),
        ({"graceful_timeout": -1}, "graceful_timeout=-1: must be a finite number of seconds >= 0"),
        ({"graceful_timeout": None}, "graceful_timeout=None: must be a number of seconds"),
        ({"kill_timeout": None}, "kill_timeout=None: must be a number of seconds"),
        ({"restart_backoff": None}, "restart_backoff=None: must be a number of seconds"),
        ({"restart_backoff_max": None}, "restart_backoff_max=None: must be a number of seconds"),
        ({"restart_backoff_max": -1}, "restart_backoff_max=-1: must be a finite number of "
                                      "seconds >= 0"),
        ({"restart_period": None}, "restart_period=None: must be a number of seconds"),
        ({"setup_timeout": 0}, "setup_timeout=0: must be a finite number of seconds > 0"),
        ({"graceful_term": 1}, "graceful_term=1: must be true or false"),
        ({"max_workers": 1.0}, "max_workers=1.0: must be a whole number >= 0"),
        ({"max_restarts": "3"}, "max_restarts='3': must be a whole number >= 0"),
        ({"restart_backoff": 2, "restart_backoff_max": 1},
         "restart_backoff_max=1: must be >= restart_backoff (2)"),
        ({"workers": 5, "max_workers": 4}, "workers=5: exceeds max_workers (4)"),
        ({"groups": {"mail": 5}, "max_workers": 4}, "groups.mail=5: exceeds max_workers (4)"),
        ({"min_workers": 3, "max_workers": 2, "workers": 2},
         "min_workers=3: exceeds max_workers (2)"),
        ({"workers": 1, "min_workers": 2}, "workers=1: is below min_workers (2)"),
        ({"min_spare": 1}, "min_spare=1: needs max_workers: a pool that grows by itself "
                           "needs a ceiling"),
        ({"min_spare": 2, "max_spare": 1, "max_workers": 4},
         "max_spare=1: must be >= min_spare (2)"),
        ({"groups": {"a\nb": 1}}, "groups='a\\nb': a group name is non-empty text without "
                                   "control characters"),
        ({"groups": {"": 1}}, "groups='': a group name is non-empty text without control "
                              "characters"),
        ({"groups": [("a", 1)]}, "groups=[('a', 1)]: must map group names to worker counts"),
        ({"name": 3}, "name=3: must be a non-empty string"),
        ({"wokers": 2}, "wokers=2: is not a prefork option"),
        ({"groups": {"a": 1}, "workers": 2}, "groups={'a': 1}: give either workers or groups, "
                                             "not both"),
    ],
)
def test_messages_say_what_is_wrong(options: dict, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        PoolConfig.of(**options)
    assert str(caught.value) == message


def test_zero_and_none_are_accepted_where_they_mean_something() -> None:
    config = PoolConfig.of(
        workers=0, timeout=None, setup_timeout=None, graceful_timeout=0, kill_timeout=0,
        restart_backoff_max=0.1, max_workers=0, max_restarts=0, max_performs=1,
    )
    group = config.groups[0]
    assert (group.graceful_timeout, group.kill_timeout, group.max_restarts) == (0, 0, 0)


def test_scaling_options_are_per_pool_and_accept_their_edges() -> None:
    config = PoolConfig.of(groups={
        "mail": {"workers": 2, "min_workers": 1, "max_workers": 6, "min_spare": 1,
                 "max_spare": 1, "idle_timeout": 5, "scale_interval": 0.5},
        "sms": {"workers": 1, "max_restarts": 3, "restart_period": 10},
    })
    mail, sms = config.groups
    assert (mail.min_spare, mail.max_spare, mail.idle_timeout) == (1, 1, 5)
    assert (sms.min_spare, sms.max_spare, sms.min_workers) == (None, None, 0)
    assert (mail.max_restarts, sms.max_restarts, sms.restart_period) == (None, 3, 10)
    # only shrinking needs no ceiling
    assert PoolConfig.of(workers=3, max_spare=1).groups[0].max_spare == 1


def test_groups_must_be_a_non_empty_tuple() -> None:
    with pytest.raises(ConfigError, match=r"^groups=\[\]: must name at least one group$"):
        PoolConfig(groups=[])  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"^groups=\(\): must name at least one group$"):
        PoolConfig(groups=())


def test_a_group_built_by_hand_needs_a_count() -> None:
    with pytest.raises(ConfigError) as caught:
        PoolConfig(groups=(GroupConfig("a", None),))  # type: ignore[arg-type]
    assert str(caught.value) == "groups.a=None: must be a whole number >= 0"


def test_group_names_are_free_text() -> None:
    """resque-pool names pools by queue lists: commas, quotes and spaces are fine."""
    names = ["high,default", 'say "hi"', "a b", "mail:2"]
    config = PoolConfig.of(groups=dict.fromkeys(names, 1))
    assert config.group_names == tuple(names)


@pytest.mark.parametrize(("kind", "words"), [
    (Kind(), "text"),
    (Count(0), "whole number >= 0"),
    (Count(1, optional=True), "whole number >= 1, or off"),
    (Seconds(), "seconds >= 0"),
    (Seconds(positive=True, optional=True), "seconds > 0, or off"),
    (Flag(), "true or false"),
    (FilePath(), "file path"),
    (FilePath(optional=True), "file path, or none"),
])
def test_each_kind_says_what_it_takes(kind: Kind, words: str) -> None:
    # the words of the generated options table in docs/guide.md
    assert kind.describe() == words


@pytest.mark.parametrize(("text", "value"), [
    ("1", True), (" TRUE ", True), ("yes", True), ("On", True),
    ("0", False), ("false", False), (" No", False), ("OFF", False),
])
def test_a_flag_reads_the_usual_words(text: str, value: bool) -> None:
    assert Flag().parse(text) is value


@pytest.mark.parametrize("text", ["", "2", "truthy", "y"])
def test_a_flag_refuses_other_words(text: str) -> None:
    with pytest.raises(ValueError, match="is not true or false"):
        Flag().parse(text)


def test_seconds_read_whole_numbers_as_whole() -> None:
    # so that a value read from a flag prints as it was written: "timeout 5", not "5.0"
    assert repr(Seconds().parse("5")) == "5"
    assert Seconds().parse("0.5") == 0.5
    with pytest.raises(ValueError, match="'soon' is not a number of seconds"):
        Seconds().parse("soon")


def test_a_config_made_directly_takes_every_options_declared_default() -> None:
    """The dataclasses' fields come from the option registry, defaults included: a group
    or a pool made without ``of`` has what the registry says, not ``None``."""
    from prefork.core.core_options import GROUP_OPTIONS, MASTER_OPTIONS

    group = GroupConfig("mail")
    assert {o.name: getattr(group, o.name) for o in GROUP_OPTIONS} == {
        o.name: o.default for o in GROUP_OPTIONS}
    assert group.graceful_timeout == 30.0  # one of them, as a reader would check it
    pool = PoolConfig()
    assert {o.name: getattr(pool, o.name) for o in MASTER_OPTIONS} == {
        o.name: o.default for o in MASTER_OPTIONS}


def test_a_group_the_config_lacks_is_a_key_error_naming_it() -> None:
    with pytest.raises(KeyError, match="nosuch"):
        PoolConfig.of(groups={"mail": 1}).group("nosuch")


def test_an_unknown_option_of_a_group_is_named_with_its_pool_and_value() -> None:
    with pytest.raises(ConfigError) as caught:
        PoolConfig.of(groups={"mail": {"workers": 1, "bogus": 7}})
    assert str(caught.value) == "groups.mail.bogus=7: is not an option of a group"


@pytest.mark.parametrize("optional", [True, False])
def test_a_path_is_non_empty_text_and_none_only_where_optional(optional: bool) -> None:
    path = FilePath(optional=optional)
    bad = "must be a path (non-empty text)"
    assert [path.why_not(value) for value in (None, "", 3, "pool.toml")] == [
        None if optional else bad, bad, bad, None]
