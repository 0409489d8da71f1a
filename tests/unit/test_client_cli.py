"""The client commands' pure parts: packing a folder, the wait loop and its exit codes,
where the URL and key come from, tables (the real daemon: tests/integration/test_client.py)."""
from __future__ import annotations

import argparse
import io
import zipfile

import pytest

from crawld import cli, clientcli
from crawld.client import DEFAULT_URL, Client, ClientError
from crawld.projectzip import PackError, pack


def write(root, files: dict[str, str]) -> str:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return str(root)


def test_pack_names_the_top_folder_after_scrapy_cfg_and_skips_checkout_clutter(tmp_path):
    folder = write(tmp_path / "checkout", {
        "scrapy.cfg": "[settings]\ndefault = shop.settings\n[deploy]\nproject = shop\n",
        "shop/__init__.py": "", "shop/spiders/a.py": "x = 1\n",
        "shop/__pycache__/a.cpython-311.pyc": "", "shop/spiders/b.pyc": "",
        ".git/HEAD": "ref\n", "venv/bin/python": "", "shop.egg-info/PKG-INFO": ""})
    name, data = pack(folder)
    assert name == "shop"
    names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    assert names == ["shop/scrapy.cfg", "shop/shop/__init__.py", "shop/shop/spiders/a.py"]


def test_a_scripts_only_folder_is_named_after_itself(tmp_path):
    folder = write(tmp_path / "pages", {"scripts/shot.py": "print(1)\n"})
    name, data = pack(folder)
    assert name == "pages"
    assert zipfile.ZipFile(io.BytesIO(data)).namelist() == ["pages/scripts/shot.py"]


@pytest.mark.parametrize("files, message", [
    ({"README": "hi"}, "neither scrapy.cfg nor a scripts/ folder"),
    ({"scrapy.cfg": "[settings]\ndefault = x.settings\n"}, "cannot read [deploy] project"),
])
def test_folders_that_cannot_be_pushed_say_why(tmp_path, files, message):
    with pytest.raises(PackError, match=message.replace("[", r"\[").replace("]", r"\]")):
        pack(write(tmp_path / "f", files))


def test_url_and_key_come_from_flags_then_the_environment_then_defaults():
    env = {"CRAWLD_URL": "http://10.0.0.5:7000/", "CRAWLD_KEY": "k-env"}
    assert (Client.from_env(environ={}).url, Client.from_env(environ={}).key) == (
        DEFAULT_URL, None)
    c = Client.from_env(environ=env)
    assert (c.url, c.key) == ("http://10.0.0.5:7000", "k-env")
    c = Client.from_env("https://h:1/prefix", "k-flag", environ=env)
    assert (c.url, c.key, c.prefix) == ("https://h:1/prefix", "k-flag", "/prefix")
    with pytest.raises(ClientError, match="not a daemon URL"):
        Client("ftp://h")


class FakeDaemon:
    """Answers list-jobs.json?id= with the next of ``statuses``; each answer takes the
    ``wait`` it was given on the fake clock, as a daemon holding the answer would."""

    def __init__(self, statuses: list[str], clock: list[float]) -> None:
        self.statuses, self.clock, self.asked = list(statuses), clock, []

    def get(self, path, params, timeout=None):
        self.asked.append(dict(params))
        status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        self.clock[0] += params["wait"]
        return {"jobs": [{"identifier": params["id"], "status": status,
                          "reason": "exit code 3" if status == "FAILED" else None}]}


@pytest.mark.parametrize("final, code, line", [
    ("SUCCESSFUL", 0, "j1: SUCCESSFUL"),
    ("FAILED", 1, "j1: FAILED (exit code 3)"),
    ("CANCELED", 5, "j1: CANCELED"),
])
def test_wait_holds_on_the_daemon_until_the_job_ends(final, code, line):
    now = [1000.0]
    daemon = FakeDaemon(["PENDING", "RUNNING", final], now)
    out, err = io.StringIO(), io.StringIO()
    assert clientcli._wait_for(daemon, "j1", None, False, out, err, lambda: now[0]) == code
    assert out.getvalue() == line + "\n"
    assert [a["wait"] for a in daemon.asked] == [30, 30, 30]
    assert err.getvalue() == ""  # no progress line when stderr is not a terminal


def test_wait_gives_up_after_its_timeout_with_its_own_code():
    now = [0.0]
    daemon = FakeDaemon(["RUNNING"], now)
    out, err = io.StringIO(), io.StringIO()
    assert clientcli._wait_for(daemon, "j1", 45, False, out, err, lambda: now[0]) == 6
    assert [a["wait"] for a in daemon.asked] == [30, 15]  # never past the timeout
    assert err.getvalue() == "crawld: j1 had not ended after 45 s\n"


def test_schedule_sends_repeatable_args_and_settings_as_the_api_names_them():
    sent = []

    class Recorder:
        def post(self, path, fields, timeout=None):
            sent.append((path, fields))
            return {"identifier": "j9"}
    args = cli.build_parser().parse_args([
        "schedule", "shop", "books", "--when", "every 10 minutes", "--arg", "cat=a=b",
        "--arg", "cat=c", "--setting", "DOWNLOAD_DELAY=2", "--fail-on", "no-items"])
    out = io.StringIO()
    assert clientcli._schedule(Recorder(), args, out, io.StringIO(), lambda: 0.0) == 0
    path, fields = sent[0]
    assert path == "/schedule-job.json" and out.getvalue() == "j9\n"
    assert [f for f in fields if f[1] is not None] == [
        ("project", "shop"), ("spider", "books"), ("when", "every 10 minutes"),
        ("fail-on", "no-items"), ("arg-cat", "a=b"), ("arg-cat", "c"),
        ("setting", "DOWNLOAD_DELAY=2")]


def test_bad_pairs_and_waiting_on_a_schedule_are_usage_errors(capsys):
    for argv in (["schedule", "p", "s", "--arg", "=x"], ["schedule", "p", "s", "--setting",
                 "NOEQUALS"], ["schedule", "p", "s", "--when", "every day", "--wait"]):
        args = cli.build_parser().parse_args(argv + ["--url", "http://127.0.0.1:9"])
        assert clientcli.run(args) == 2
    assert capsys.readouterr().err.splitlines() == [
        "crawld: --arg takes NAME=VALUE, not '=x'",
        "crawld: --setting takes NAME=VALUE, not 'NOEQUALS'",
        "crawld: --wait waits for 'now' jobs only"]


def test_tables_align_columns_and_leave_the_last_unpadded():
    out = io.StringIO()
    clientcli._table(("ID", "STATUS", "WHY"), [("a", "RUNNING", ""), ("bbbb", "OK", "x y")],
                     out)
    assert out.getvalue().splitlines() == ["ID    STATUS   WHY", "a     RUNNING",
                                           "bbbb  OK       x y"]


def test_every_client_command_is_registered():
    parser = cli.build_parser()
    for name in clientcli.COMMANDS:
        extra = {"push": [], "schedule": ["p", "s"], "logs": ["i"], "cancel": ["i"],
                 "wait": ["i"]}.get(name, [])
        assert isinstance(parser.parse_args([name, *extra]), argparse.Namespace)
