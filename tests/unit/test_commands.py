"""The command that runs a job (crawld.commands): argv, environment, directory, bootstrap."""
from __future__ import annotations

import json

import pytest

from crawld import runner
from crawld.commands import Command, crawl_command, job_env, list_command
from crawld.model import Actor, Job, JobStatus

PYTHON = "/opt/venv/bin/python"
BASE_ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": "/var/lib/crawld"}


def make_job(payload: str = "{}", spider: str = "quotes") -> Job:
    return Job(id="6c3e-job", status=JobStatus.PENDING, actor=Actor.USER, schedule="now",
               project="books", spider=spider, created=1.0, updated=1.0, payload=payload)


def pairs(args) -> list[tuple[str, str]]:
    return list(zip(args, args[1:]))


def test_argv_starts_with_the_interpreter_and_the_bootstrap():
    cmd = crawl_command(make_job(), "/data/projects/books/3", PYTHON, BASE_ENV)
    assert isinstance(cmd, Command)
    assert cmd.args[:5] == (PYTHON, "-c", runner.BOOTSTRAP, runner.DIR, "spider")
    assert cmd.executable == PYTHON
    assert cmd.args[5:] == cmd.scrapy_args, "the rest is what follows ``scrapy``"


def test_argv_crawls_the_spider():
    cmd = crawl_command(make_job(spider="quotes"), "/d", PYTHON, BASE_ENV)
    assert cmd.args[5:7] == ("crawl", "quotes")


@pytest.mark.parametrize("setting", ["TELNETCONSOLE_ENABLED=0", "REMOTE_CONTROL_ENABLED=0"])
def test_argv_disables_the_remote_consoles(setting):
    cmd = crawl_command(make_job(), "/d", PYTHON, BASE_ENV)
    assert ("-s", setting) in pairs(cmd.args)


@pytest.mark.parametrize("payload", ["{}", "{ }", "", " {\n} "])
def test_empty_payload_is_not_passed(payload):
    cmd = crawl_command(make_job(payload), "/d", PYTHON, BASE_ENV)
    assert "-a" not in cmd.args
    assert not any(a.startswith("payload=") for a in cmd.args)


def test_payload_is_passed_as_a_spider_argument():
    payload = json.dumps({"category": "books", "pages": [1, 2]})
    cmd = crawl_command(make_job(payload), "/d", PYTHON, BASE_ENV)
    assert ("-a", f"payload={payload}") in pairs(cmd.args)
    assert cmd.args.count("-a") == 1


@pytest.mark.parametrize("payload", ['[]', '0', '"text"', '{"a": null}'])
def test_non_empty_object_or_other_json_payload_is_passed(payload):
    cmd = crawl_command(make_job(payload), "/d", PYTHON, BASE_ENV)
    assert ("-a", f"payload={payload}") in pairs(cmd.args)


def test_env_is_the_base_env_plus_the_job_identity():
    cmd = crawl_command(make_job(), "/d", PYTHON, BASE_ENV)
    assert dict(cmd.env) == {**BASE_ENV, "CRAWLD_JOB_ID": "6c3e-job",
                             "CRAWLD_PROJECT": "books", "CRAWLD_SPIDER": "quotes"}


def test_env_does_not_modify_the_base_env():
    base = dict(BASE_ENV)
    job_env(base, make_job())
    assert base == BASE_ENV


def test_job_identity_overrides_a_stale_value_in_the_base_env():
    env = job_env({**BASE_ENV, "CRAWLD_JOB_ID": "stale"}, make_job())
    assert env["CRAWLD_JOB_ID"] == "6c3e-job"


def test_cwd_is_the_project_dir():
    cmd = crawl_command(make_job(), "/data/projects/books/3", PYTHON, BASE_ENV)
    assert cmd.cwd == "/data/projects/books/3"


def test_list_command_runs_scrapy_list_without_job_identity():
    cmd = list_command("/data/projects/.staging/4f1c", "books", PYTHON,
                       {**BASE_ENV, "CRAWLD_JOB_ID": "stale"})
    assert cmd.args == (PYTHON, "-c", runner.BOOTSTRAP, runner.DIR, "spider", "list")
    assert dict(cmd.env) == {**BASE_ENV, "CRAWLD_LIST": "/data/projects/.staging/4f1c",
                             "CRAWLD_PROJECT": "books"}, "marked as a list, not a job"
    assert cmd.cwd == "/data/projects/.staging/4f1c"
