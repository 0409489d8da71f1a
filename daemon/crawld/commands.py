"""Pure functions from a job to the command that runs it: argv, environment, directory.

Kept free of I/O so the exact command line is unit-testable, and so nothing about a job's
process is decided anywhere else.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Mapping, Optional

from . import runner
from .model import Job
from .runner.proc import LIST_ENV

#: What runs a direct ``scrapy <args>`` in the job's interpreter: runner/spider.py, a
#: session of its own (so cancel reaches the whole process group), the job's process
#: title, then Scrapy's command line in the same process. No crawld import, so any
#: interpreter with Scrapy installed can run jobs.
SPIDER = "spider"

#: The fd a spider job's stats extension writes its reports to (runner/stats.py).
STATS_FD = 3

#: Settings forced on every job. RemoteControl (Scrapy 2.19) opens a local port that runs
#: code, the telnet console opens another: neither may be reachable on a shared host.
FORCED_SETTINGS = {
    "TELNETCONSOLE_ENABLED": "0",
    "REMOTE_CONTROL_ENABLED": "0",
}


@dataclass(frozen=True)
class RunAs:
    """The user jobs run as (``[crawld] run-as``, when crawld starts as root)."""

    name: str
    uid: int
    gid: int
    home: str

    def env(self) -> dict[str, str]:
        return {"HOME": self.home, "USER": self.name, "LOGNAME": self.name}


@dataclass(frozen=True)
class Command:
    """Everything spawnProcess needs; ``args[0]`` is the executable."""

    args: tuple[str, ...]
    env: Mapping[str, str]
    cwd: str
    scrapy_args: tuple[str, ...] = ()  # what follows ``scrapy`` (for the zygote)
    uid: Optional[int] = None          # run as this user and group (None: crawld's)
    gid: Optional[int] = None
    stats_fifo: Optional[str] = None   # the job's stats channel (launch/statspipe.py)

    @property
    def executable(self) -> str:
        return self.args[0]


def job_env(base: Mapping[str, str], job: Job, run_as: Optional[RunAs] = None
            ) -> dict[str, str]:
    """The daemon's environment plus what tells the child which job it is (and, for a
    ``run-as`` user, that user's HOME, USER and LOGNAME)."""
    env = dict(base)
    env.update(CRAWLD_JOB_ID=job.id, CRAWLD_PROJECT=job.project, CRAWLD_SPIDER=job.spider)
    if run_as is not None:
        env.update(run_as.env())
    return env


def as_user(cmd: Command, run_as: Optional[RunAs]) -> Command:
    """``cmd`` run as ``run_as`` (unchanged when None)."""
    if run_as is None:
        return cmd
    return replace(cmd, uid=run_as.uid, gid=run_as.gid)


def crawl_command(job: Job, project_dir: str, python: str,
                  base_env: Mapping[str, str], run_as: Optional[RunAs] = None) -> Command:
    """``scrapy crawl <spider>`` for a job, run from the project's unpacked version.

    The job's own settings (``-s``) come first and crawld's forced ones after them, so
    that Scrapy keeps crawld's values whatever a stored row holds; then the job's
    arguments (``-a``) in the order given; then the payload as ``-a payload=<json>``
    unless it is the empty object, exactly as scrapy-do passes it (and scrapyd's launcher
    passes settings and arguments the same way).
    """
    args = ["crawl", job.spider]
    for name, value in stored_pairs(job.settings):
        args += ["-s", f"{name}={value}"]
    for name, value in FORCED_SETTINGS.items():
        args += ["-s", f"{name}={value}"]
    for name, value in stored_pairs(job.args):
        args += ["-a", f"{name}={value}"]
    if job.payload and json.loads(job.payload) != {}:
        args += ["-a", f"payload={job.payload}"]
    return as_user(Command(runner.argv(python, SPIDER, *args),
                           job_env(base_env, job, run_as), project_dir, tuple(args)), run_as)


def stored_pairs(text: str) -> list[tuple[str, str]]:
    """A job's stored ``[[name, value], ...]`` (Job.args, Job.settings) as pairs
    (``"[]"``, what most jobs have, costs no parse)."""
    return [] if text == "[]" or not text else [(n, v) for n, v in json.loads(text)]


def with_reports(cmd: Command, stats_fifo: Optional[str], interval: float,
                 items: Optional[str]) -> Command:
    """A spider job's command with what it reports home: stats through ``stats_fifo``
    (as fd STATS_FD, every ``interval`` seconds; None: no stats), items to the file
    ``items`` (None: no items file). The job's process reads the environment
    (runner/crawl.py); the spawner opens the FIFO for it."""
    env = dict(cmd.env)
    if stats_fifo is not None:
        env.update(CRAWLD_STATS_FD=str(STATS_FD), CRAWLD_STATS_INTERVAL=f"{interval:g}")
    if items is not None:
        env["CRAWLD_ITEMS"] = items
    return replace(cmd, env=env, stats_fifo=stats_fifo)


def list_command(project_dir: str, name: str, python: str, base_env: Mapping[str, str],
                 run_as: Optional[RunAs] = None) -> Command:
    """``scrapy list`` in an unpacked project, to discover its spiders. It imports the
    project's code, so it runs as the ``run-as`` user too.

    ``CRAWLD_LIST=<project_dir>`` (runner.proc.LIST_ENV) marks it and everything it
    starts, so that a restarted daemon finds a list its predecessor left running
    (``tree.find_lists``); ``CRAWLD_PROJECT`` names the project in its title,
    ``crawld: list <name>``."""
    env = dict(base_env)
    env.pop("CRAWLD_JOB_ID", None)
    env.update({LIST_ENV: project_dir, "CRAWLD_PROJECT": name})
    if run_as is not None:
        env.update(run_as.env())
    return as_user(Command(runner.argv(python, SPIDER, "list"), env, project_dir), run_as)
