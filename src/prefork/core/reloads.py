"""The master's reload rows' callbacks: read the file, take a config, or keep the old one.

HUP with a config file asks the adapter to read it (``ReadConfig``); its answer is a
config to take (``ConfigLoaded``) or a reason to keep the running one
(``ConfigRejected``). Either way every worker is replaced, gracefully. A config taken
keeps the options a reload cannot change (``reloadable=False`` in ``core_options``) at
their running values, and says so. The methods run on the master's model (this class is
one of its bases) and use its config, roster, restart policy and context.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from prefork.core.core_options import MASTER_OPTIONS
from prefork.core.effects import Log, ReadConfig

if TYPE_CHECKING:
    from prefork.core.context import MachineContext
    from prefork.core.restarts import RestartPolicy
    from prefork.core.roster import Roster
    from prefork.core.settings import PoolConfig

_UNRELOADABLE = tuple(option.name for option in MASTER_OPTIONS if not option.reloadable)


class Reloads:
    """The callbacks of the reload rows of the master's table."""

    config: PoolConfig
    awaiting_config: str | None
    roster: Roster
    restarts: RestartPolicy
    context: MachineContext
    replace_workers: Any  # the master model's: a new generation, the old one stopped

    def read_config(self, *_: Any) -> None:
        assert self.config.config_file is not None  # has_config_file guards this row
        self.awaiting_config = self.config.config_file
        self.context.emit(ReadConfig(self.config.config_file))

    def take_file_and_replace_workers(self, config: PoolConfig) -> None:
        self.context.emit(Log("info", f"config file {self.config.config_file} reloaded",
                              (("event", "reloaded"), ("config_file", self.config.config_file))))
        self.take_config_and_replace_workers(config)

    def take_config_and_replace_workers(self, config: PoolConfig) -> None:
        """A new config: groups come and go, kept groups' workers take their new options."""
        config = self._keep_unreloadable(config)
        self.config = config
        self.roster.adopt(config)
        self.restarts.reconfigure(config)
        self.roster.set_targets({g.name: g.workers for g in config.groups})
        self.replace_workers()

    def _keep_unreloadable(self, config: PoolConfig) -> PoolConfig:
        kept = {name: getattr(self.config, name) for name in _UNRELOADABLE
                if getattr(config, name) != getattr(self.config, name)}
        for name, value in kept.items():
            self.context.emit(Log("warning", f"{name} cannot change on a reload (restart "
                                             f"the master to change it): keeping {value!r}"))
        return config.with_options(**kept)

    def keep_config_and_replace_workers(self, path: str, why: str) -> None:
        self.context.emit(Log("error", f"config file {path} not reloaded, the running "
                                       f"config stays: {why}"))
        self.replace_workers()

