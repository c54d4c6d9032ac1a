"""``prefork init DIR``: a small project that runs as it stands (Raemon's generator).

It writes, into DIR (created if need be; no existing file is ever overwritten):

- ``jobs.py``: two example jobs, a ``prefork.Job`` class and a plain function;
- ``prefork.toml``: two pools running them, with the options worth knowing at hand;
- ``NAME.service``: a systemd unit (``Type=notify``: the master says when it is ready,
  reloading and stopping; ``KillMode=mixed`` so that a stop is the master's to conduct);
- ``NAME.logrotate``: a logrotate snippet that sends USR1 to reopen the log;
- ``README.md``: how to run it, in the foreground, as a daemon, under systemd.

Paths in the files are absolute (the directory's, the Python that runs prefork), so
``prefork run -c DIR/prefork.toml`` works from anywhere; move the directory and they
are to be edited.
"""

from __future__ import annotations

import os
import re
import sys
from string import Template

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


class ScaffoldError(Exception):
    """The project cannot be written (a file exists already, the directory cannot be
    made...): nothing was written."""


def project_name(directory: str) -> str:
    """The project's name, from its directory: safe in a unit's file name and a title."""
    base = os.path.basename(os.path.abspath(directory))
    return _UNSAFE.sub("-", base).strip("-.") or "prefork-app"


def files_of(directory: str, name: str, python: str) -> dict[str, str]:
    """The files of the project (name -> text) for ``directory`` (absolute)."""
    values = {"dir": directory, "name": name, "python": python}
    return {
        "jobs.py": Template(_JOBS).substitute(values),
        "prefork.toml": Template(_CONFIG).substitute(values),
        f"{name}.service": Template(_UNIT).substitute(values),
        f"{name}.logrotate": Template(_LOGROTATE).substitute(values),
        "README.md": Template(_README).substitute(values),
    }


def write_project(directory: str, name: str | None = None,
                  python: str | None = None) -> list[str]:
    """Write the project into ``directory``; the paths written, in order.

    Raises ``ScaffoldError`` when a file exists already or cannot be written; then
    nothing is left half-written (the files already written are removed).
    """
    directory = os.path.abspath(directory)
    name = name or project_name(directory)
    files = files_of(directory, name, python or sys.executable)
    existing = [file for file in files if os.path.lexists(os.path.join(directory, file))]
    if existing:
        raise ScaffoldError(f"{os.path.join(directory, existing[0])} exists already: "
                            "nothing written")
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as error:
        raise ScaffoldError(f"{directory} cannot be made ({error.strerror})") from None
    written: list[str] = []
    try:
        for file, text in files.items():
            path = os.path.join(directory, file)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(text)
            written.append(path)
    except OSError as error:
        for path in written:
            os.unlink(path)
        raise ScaffoldError(f"{error.filename} cannot be written ({error.strerror}): "
                            "nothing written") from None
    return written


def summary(written: list[str]) -> str:
    """What ``prefork init`` prints once done."""
    directory = os.path.dirname(written[0])
    config = os.path.join(directory, "prefork.toml")
    lines = [f"wrote {path}" for path in written]
    lines.append(f"run it with: prefork run -c {config}   (QUIT or Ctrl-C to stop)")
    return "\n".join(lines)


_JOBS = '''\
"""The jobs of ${name}: each pool of prefork.toml runs one of them.

A job is a prefork.Job (setup() once per worker, perform() over and over, teardown()
once on a graceful stop) or a plain function, which is one perform. Replace the bodies
with your work; docs/guide.md has the rest.
"""

import time

import prefork


class Example(prefork.Job):
    """One unit of work per perform."""

    def setup(self):
        # once per worker process, after the fork: open connections here, not at import
        self.done = 0

    def perform(self):
        # take one unit of work and do it; with nothing to do, return prefork.IDLE
        time.sleep(0.5)  # stands for the work
        self.done += 1

    def teardown(self):
        # once, on a graceful stop (QUIT), after the last perform: close what setup opened
        pass


def heartbeat(worker):
    """A function is a job too; taking an argument, it gets the worker's context."""
    if worker.stopping:  # asked to stop gracefully: long loops should look
        return prefork.IDLE
    time.sleep(1)
    return prefork.IDLE  # found nothing to do: counts as idle time, not as a perform
'''

_CONFIG = '''\
# ${name}: the pools of this project. Run them with
#
#     prefork run -c ${dir}/prefork.toml
#
# Every key is an option of prefork (`prefork run --help` lists them as flags; here with
# underscores). Master options go at the top, one [pool.NAME] table per pool; a group
# option at the top applies to every pool. HUP reads this file again.

name = "${name}"
graceful_timeout = 30     # QUIT: how long a worker may take to finish its perform
# graceful_term = true    # TERM means QUIT too (containers stop with TERM)
# pidfile = "${dir}/${name}.pid"    # with --daemon, and for logrotate's USR1
# log_file = "${dir}/${name}.log"   # instead of stderr; USR1 reopens it

[pool.example]
job = "${dir}/jobs.py:Example"
workers = 2
timeout = 60              # a perform running longer is killed (its stack logged first)

[pool.heartbeat]
job = "${dir}/jobs.py:heartbeat"
workers = 1
'''

_UNIT = '''\
# systemd unit for ${name}: copy to /etc/systemd/system/${name}.service, then
#     systemctl daemon-reload && systemctl enable --now ${name}
[Unit]
Description=${name} (prefork pools)
After=network.target

[Service]
# the master tells systemd when it is ready, reloading and stopping
Type=notify
NotifyAccess=main
ExecStart=${python} -m prefork run -c ${dir}/prefork.toml
ExecReload=/bin/kill -HUP $$MAINPID
# a graceful stop: QUIT lets each worker finish its perform
KillSignal=SIGQUIT
# the stop is the master's to conduct: the signal goes to it alone, and whatever is
# left when the timeout ends is killed (the default, control-group, would signal every
# worker at once, behind the master's back)
KillMode=mixed
# longer than graceful_timeout, so that the master finishes the stop itself
TimeoutStopSec=45
# the master pings every 15 s while its loop turns; a master stuck for 30 s is restarted
WatchdogSec=30
Restart=on-failure
WorkingDirectory=${dir}
# User=${name}

[Install]
WantedBy=multi-user.target
'''

_LOGROTATE = '''\
# logrotate snippet for ${name}, with log_file and pidfile set in prefork.toml:
# copy to /etc/logrotate.d/${name}. USR1 makes the master and every worker reopen the
# log, so no line is lost and no copytruncate is needed.
${dir}/${name}.log {
    weekly
    rotate 8
    compress
    delaycompress
    missingok
    notifempty
    sharedscripts
    postrotate
        [ -s ${dir}/${name}.pid ] && kill -USR1 "$$(cat ${dir}/${name}.pid)" || true
    endscript
}
'''

_README = '''\
# ${name}

Pools of pre-forked workers, run by prefork.

| file | what |
|---|---|
| `jobs.py` | the jobs: replace the examples with your work |
| `prefork.toml` | the pools (job and count each) and the options |
| `${name}.service` | a systemd unit (`Type=notify`) |
| `${name}.logrotate` | a logrotate snippet (USR1 reopens the log) |

## Run it

    prefork run -c ${dir}/prefork.toml

Stop it with QUIT (each worker finishes its perform) or Ctrl-C / TERM (at once).
While it runs: HUP re-reads `prefork.toml` and replaces every worker gracefully (new
code too), TTIN/TTOU add or remove a worker of the first pool, USR1 reopens the log.

## As a daemon

Set `pidfile` and `log_file` in `prefork.toml`, then

    prefork run -c ${dir}/prefork.toml --daemon

The command returns once the workers are forked and the pid file is written (status 0),
or prints why the master could not start (status non-zero). Send signals to the pid in
the pid file.

## Under systemd

    sudo cp ${name}.service /etc/systemd/system/
    sudo systemctl daemon-reload
    sudo systemctl enable --now ${name}
    systemctl status ${name}          # the pool's counts, from the master
    sudo systemctl reload ${name}     # HUP

Don't use `--daemon` or a pid file under systemd: the unit tracks the master itself.
'''
