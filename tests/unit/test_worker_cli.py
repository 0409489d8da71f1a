"""``crawld worker``'s command line: required options, clear errors, exit code 2, and
the Celery settings and names both sides share."""
from __future__ import annotations

from typing import Any

import pytest

from crawld import cli
from crawld.launch import worker

GOOD = ["worker", "--broker", "redis://127.0.0.1:6379/0", "--daemon", "http://d:7654",
        "--key", "k"]


def options(argv: list[str]) -> worker.WorkerOptions:
    return worker.options_from(cli.build_parser().parse_args(argv))


@pytest.mark.parametrize("argv, error", [
    (["worker", "--daemon", "http://d", "--key", "k"], "--broker is required"),
    (["worker", "--broker", "amqp://x", "--daemon", "http://d", "--key", "k"],
     "expected redis://HOST:PORT/DB"),
    (["worker", "--broker", "redis://x/0", "--key", "k"], "--daemon is required"),
    (["worker", "--broker", "redis://x/0", "--daemon", "ftp://d", "--key", "k"],
     "expected an http:// or https:// URL"),
    (["worker", "--broker", "redis://x/0", "--daemon", "http://d"], "no key: pass --key"),
    (GOOD + ["--concurrency", "0"], "--concurrency must be 1 or more"),
    (GOOD + ["--queues", "spider,gpu"], "unknown queue(s) gpu"),
    (GOOD + ["--ca-file", "/nonexistent.pem"], "no such file"),
])
def test_bad_options_exit_2_with_a_clear_error(argv: list[str], error: str,
                                               monkeypatch: Any, capsys: Any) -> None:
    for name in ("CRAWLD_KEY", "CRAWLD_BROKER", "CRAWLD_DAEMON"):
        monkeypatch.delenv(name, raising=False)
    assert cli.main(argv) == 2
    assert error in capsys.readouterr().err


def test_options_and_their_defaults(monkeypatch: Any) -> None:
    monkeypatch.delenv("CRAWLD_KEY", raising=False)
    o = options(GOOD)
    assert (o.broker, o.daemon, o.key) == ("redis://127.0.0.1:6379/0", "http://d:7654", "k")
    assert o.queues == ("spider", "browser") and o.concurrency >= 1 and o.preload
    assert o.name == ""   # the host name at start: a restarted worker keeps its name
    monkeypatch.setenv("CRAWLD_KEY", "from-env")
    o = options(GOOD[:-2] + ["--queues", "browser", "--concurrency", "3", "--name", "w9",
                             "--no-preload"])
    assert o.key == "from-env" and o.queues == ("browser",) and o.concurrency == 3
    assert o.name == "w9" and not o.preload


def test_help_documents_every_option(capsys: Any) -> None:
    with pytest.raises(SystemExit):
        cli.main(["worker", "--help"])
    text = capsys.readouterr().out
    for flag in ("--broker", "--daemon", "--key", "CRAWLD_KEY", "--data-dir",
                 "--concurrency", "--queues", "--name", "--python", "--ca-file"):
        assert flag in text


def test_the_celery_contract() -> None:
    """Names and settings the daemon's sender and the worker share (docs/cluster.md)."""
    assert worker.task_id("abc", 17) == "abc.17"
    assert worker.queue_for("spider") == "crawld.spider"
    assert worker.queue_for("script") == worker.queue_for("browse") == "crawld.browser"
    s = worker.CELERY_SETTINGS
    assert s["task_acks_late"] is False and s["worker_prefetch_multiplier"] == 1
    assert s["task_reject_on_worker_lost"] is False and s["result_backend"] is None
    assert s["accept_content"] == ["json"] and s["task_serializer"] == "json"
    pytest.importorskip("celery")
    received = []
    app = worker.make_app("redis://127.0.0.1:1/0", received.append)
    assert worker.TASK_NAME in app.tasks
    app.tasks[worker.TASK_NAME]({"job": "j", "attempt": 1, "kind": "spider"})
    assert received == [{"job": "j", "attempt": 1, "kind": "spider"}]
