"""Spider arguments and settings (crawld.arguments): parsing, bounds, refused settings,
how a job stores and shows them, and the command line they become (literal values)."""
from __future__ import annotations

import json

import pytest

from crawld import arguments, runner
from crawld.arguments import (MAX_NAME, MAX_PAIRS, MAX_TOTAL, MAX_VALUE, as_object,
                              check_total, parse_args, parse_settings, refusal, to_json)
from crawld.commands import FORCED_SETTINGS, crawl_command, stored_pairs
from crawld.errors import BadRequest
from crawld.model import Actor, Job, JobStatus

PYTHON = "/opt/venv/bin/python"


def job(**fields) -> Job:
    return Job(id="6c3e-job", status=JobStatus.PENDING, actor=Actor.USER, schedule="now",
               project="books", spider="quotes", created=1.0, updated=1.0, **fields)


def refused(call, *given) -> str:
    with pytest.raises(BadRequest) as info:
        call(*given)
    assert info.value.code == 400
    return info.value.msg


# ---------------------------------------------------------------- arguments (-a)


def test_arguments_keep_their_order_repeats_and_any_text():
    given = [("category", "books"), ("start_url", "http://x/?a=1&b=2"), ("category", ""),
             ("note", "line 1\nline 2 = ünïcode ☃"), ("tag", "-s X=1")]
    assert parse_args(given) == given


@pytest.mark.parametrize("name", ["1st", "with space", "dash-ed", "dot.ted", "x=y", "é-x",
                                  "a\0b"])
def test_an_argument_name_must_be_a_python_identifier(name):
    msg = refused(parse_args, [(name, "v")])
    assert "not a Python identifier" in msg and repr(name) in msg


def test_unicode_identifiers_are_python_identifiers_too():
    assert parse_args([("catégorie", "livres"), ("_private", "1"), ("class", "x")]) == [
        ("catégorie", "livres"), ("_private", "1"), ("class", "x")]


def test_arg_with_no_name_is_a_clear_400():
    assert "parameter 'arg-' has no argument name" in refused(parse_args, [("", "v")])


def test_payload_is_not_an_arg_parameter():
    assert "'payload' parameter" in refused(parse_args, [("payload", "{}")])


def test_argument_bounds():
    assert parse_args([("n" * MAX_NAME, "x" * MAX_VALUE)])
    assert f"over {MAX_NAME} characters" in refused(parse_args, [("n" * (MAX_NAME + 1), "")])
    msg = refused(parse_args, [("big", "x" * (MAX_VALUE + 1))])
    assert f"{MAX_VALUE + 1} bytes; at most {MAX_VALUE}" in msg
    # bytes, not characters: 3 bytes each in UTF-8
    assert "bytes" in refused(parse_args, [("big", "☃" * (MAX_VALUE // 3 + 1))])
    assert parse_args([(f"a{i}", "") for i in range(MAX_PAIRS)])
    msg = refused(parse_args, [(f"a{i}", "") for i in range(MAX_PAIRS + 1)])
    assert f"at most {MAX_PAIRS}" in msg


def test_a_nul_in_a_value_is_refused():
    assert "NUL" in refused(parse_args, [("a", "x\0y")])
    assert "NUL" in refused(parse_settings, ["A=x\0y"])


# ---------------------------------------------------------------- settings (-s)


def test_settings_split_at_the_first_equals_sign_in_order():
    given = ["DOWNLOAD_DELAY=2", 'ITEM_PIPELINES={"p.P": 300}', "USER_AGENT=a=b", "X_1=",
             "DOWNLOAD_DELAY=3"]
    assert parse_settings(given) == [
        ("DOWNLOAD_DELAY", "2"), ("ITEM_PIPELINES", '{"p.P": 300}'), ("USER_AGENT", "a=b"),
        ("X_1", ""), ("DOWNLOAD_DELAY", "3")]


@pytest.mark.parametrize("text", ["DOWNLOAD_DELAY", "", "NO EQUALS"])
def test_a_setting_without_equals_is_a_clear_400(text):
    msg = refused(parse_settings, [text])
    assert "has no '='" in msg and "setting=NAME=VALUE" in msg


@pytest.mark.parametrize("name", ["", "1ST", "LOG LEVEL", "A-B", "É", " LOG_LEVEL"])
def test_a_setting_name_is_ascii_letters_digits_and_underscores(name):
    assert "must be ASCII letters" in refused(parse_settings, [f"{name}=1"])


@pytest.mark.parametrize("name", [
    "TELNETCONSOLE_ENABLED", "TELNETCONSOLE_PORT", "TELNETCONSOLE_HOST",
    "TELNETCONSOLE_USERNAME", "TELNETCONSOLE_PASSWORD", "telnetconsole_enabled",
    "REMOTE_CONTROL_ENABLED", "REMOTE_CONTROL_JOBS_DIR", "REMOTE_CONTROL_TIMEOUT_MAX",
    "Remote_Control_Enabled", "EXTENSIONS", "EXTENSIONS_BASE", "extensions"])
def test_settings_that_would_undo_crawlds_safety_are_refused_saying_why(name):
    msg = refused(parse_settings, [f"{name}=1"])
    assert f"setting {name} may not be set on a job" in msg and "security.md" in msg
    assert refusal(name) is not None


def test_every_setting_crawld_forces_is_refused():
    assert FORCED_SETTINGS  # crawld's own -s settings, whatever they become
    for name in FORCED_SETTINGS:
        assert refusal(name) is not None


@pytest.mark.parametrize("name", ["EXTENSIONS_X", "TELNETCONSOLE", "MY_EXTENSIONS",
                                  "DOWNLOAD_DELAY", "LOG_LEVEL", "REMOTE_CONTROLS"])
def test_other_settings_are_allowed(name):
    assert refusal(name) is None
    assert parse_settings([f"{name}=v"]) == [(name, "v")]


def test_setting_bounds():
    assert f"at most {MAX_PAIRS}" in refused(
        parse_settings, [f"S{i}=1" for i in range(MAX_PAIRS + 1)])
    assert "characters" in refused(parse_settings, ["S" * (MAX_NAME + 1) + "=1"])
    assert "bytes" in refused(parse_settings, ["S=" + "x" * (MAX_VALUE + 1)])


def test_all_arguments_and_settings_together_are_bounded():
    value = "x" * (MAX_VALUE - 10)
    many = [(f"a{i}", value) for i in range(MAX_TOTAL // MAX_VALUE)]
    check_total(many[:2], many[:1])
    msg = refused(check_total, many, many[:1])
    assert f"at most {MAX_TOTAL} in all" in msg


# ---------------------------------------------------------------- stored and shown


def test_stored_as_a_json_list_of_pairs_and_shown_as_an_object():
    pairs = [("category", "books"), ("tag", "a"), ("tag", "b")]
    text = to_json(pairs)
    assert json.loads(text) == [["category", "books"], ["tag", "a"], ["tag", "b"]]
    assert stored_pairs(text) == pairs
    assert as_object(text) == {"category": "books", "tag": "b"}  # Scrapy keeps the last
    assert list(as_object(to_json([("b", "1"), ("a", "2")]))) == ["b", "a"]
    assert to_json([]) == "[]" and as_object("[]") == {} and stored_pairs("[]") == []
    assert to_json([("ü", "☃")]) == '[["ü", "☃"]]'  # UTF-8 text, not \\u escapes


# ---------------------------------------------------------------- the command line


def test_argv_carries_settings_then_crawlds_then_arguments_then_the_payload():
    cmd = crawl_command(job(payload='{"n": 1}',
                            args='[["category", "books"], ["note", "a b=c"]]',
                            settings='[["DOWNLOAD_DELAY", "2"], ["LOG_LEVEL", "DEBUG"]]'),
                        "/d", PYTHON, {})
    assert cmd.args[:5] == (PYTHON, "-c", runner.BOOTSTRAP, runner.DIR, "spider")
    assert cmd.scrapy_args == (
        "crawl", "quotes",
        "-s", "DOWNLOAD_DELAY=2", "-s", "LOG_LEVEL=DEBUG",
        "-s", "TELNETCONSOLE_ENABLED=0", "-s", "REMOTE_CONTROL_ENABLED=0",
        "-a", "category=books", "-a", "note=a b=c",
        "-a", 'payload={"n": 1}')
    assert cmd.args[5:] == cmd.scrapy_args  # the zygote gets the same as the spawn


def test_argv_keeps_repeats_in_order_and_crawlds_settings_come_last():
    # a stored row that somehow holds a forced setting: crawld's value still wins
    cmd = crawl_command(job(args='[["tag", "a"], ["tag", "b"]]',
                            settings='[["TELNETCONSOLE_ENABLED", "1"]]'), "/d", PYTHON, {})
    assert cmd.scrapy_args == (
        "crawl", "quotes", "-s", "TELNETCONSOLE_ENABLED=1",
        "-s", "TELNETCONSOLE_ENABLED=0", "-s", "REMOTE_CONTROL_ENABLED=0",
        "-a", "tag=a", "-a", "tag=b")


def test_argv_of_a_job_without_arguments_is_unchanged():
    cmd = crawl_command(job(), "/d", PYTHON, {})
    assert cmd.scrapy_args == ("crawl", "quotes", "-s", "TELNETCONSOLE_ENABLED=0",
                               "-s", "REMOTE_CONTROL_ENABLED=0")


def test_the_module_bounds_match_what_linux_allows_in_one_argument():
    # MAX_ARG_STRLEN is 32 pages (128 KiB): NAME=VALUE must stay below it
    assert MAX_NAME * 4 + 1 + MAX_VALUE < 32 * 4096
    assert arguments.MAX_TOTAL < 2 * 1024 * 1024 // 4
