"""Settings (crawld.config): defaults, INI file, flag overrides, and validation messages."""
from __future__ import annotations

import os
import sys

import pytest

from crawld import config
from crawld.config import Listen, Settings, load, parse_listen, parse_size
from crawld.errors import ConfigError


@pytest.fixture
def ini(tmp_path):
    """Write an INI file and return its path."""
    def write(text: str) -> str:
        path = tmp_path / "crawld.ini"
        path.write_text(text, encoding="utf-8")
        return str(path)
    return write


# ---------------------------------------------------------------------------- defaults


def test_defaults_without_file_or_overrides():
    s = load()
    assert s.listen == (Listen("127.0.0.1", 7654),)
    assert s.data_dir == "./crawld-data"
    assert s.completed_cap == 1000
    assert s.completed_max_age_days == 30
    assert s.kill_grace == 10
    assert s.job_slots == 0
    assert s.list_timeout == 60
    assert s.max_archive_size == 50 * 1024 * 1024
    assert s.max_archive_files == 10000
    assert s.max_unpacked_size == 500 * 1024 * 1024
    assert s.python == sys.executable
    assert s.log_level == "info"


def test_default_listen_prints_as_host_port():
    assert str(load().listen[0]) == "127.0.0.1:7654"


def test_slots_default_to_four_per_cpu(monkeypatch):
    monkeypatch.setattr(config.os, "cpu_count", lambda: 3)
    assert Settings(job_slots=0).slots == 12
    monkeypatch.setattr(config.os, "cpu_count", lambda: None)  # unknown: count one CPU
    assert Settings(job_slots=0).slots == 4


def test_slots_use_the_configured_number_when_set(monkeypatch):
    monkeypatch.setattr(config.os, "cpu_count", lambda: 3)
    assert Settings(job_slots=5).slots == 5


def test_data_path_is_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert load().data_path == os.path.join(str(tmp_path), "crawld-data")


# ---------------------------------------------------------------------- file overrides


def test_file_overrides_defaults(ini, tmp_path):
    path = ini(f"""
[crawld]
data-dir = {tmp_path}/data
job-slots = 3
kill-grace = 2.5
completed-cap = 20
completed-max-age-days = 7
list-timeout = 15
max-archive-size = 10MB
max-archive-files = 50
max-unpacked-size = 1G
log-level = DEBUG

[web]
listen = 0.0.0.0:8000
""")
    s = load(path)
    assert s.data_dir == f"{tmp_path}/data"
    assert s.job_slots == 3 and s.slots == 3
    assert s.kill_grace == 2.5
    assert s.completed_cap == 20
    assert s.completed_max_age_days == 7
    assert s.list_timeout == 15
    assert s.max_archive_size == 10 * 1024 * 1024
    assert s.max_archive_files == 50
    assert s.max_unpacked_size == 1024 ** 3
    assert s.log_level == "debug"
    assert s.listen == (Listen("0.0.0.0", 8000),)


def test_file_leaves_unmentioned_options_at_defaults(ini):
    s = load(ini("[crawld]\ncompleted-cap = 5\n"))
    assert s.completed_cap == 5
    assert s.kill_grace == 10
    assert s.listen == (Listen("127.0.0.1", 7654),)


def test_empty_file_gives_defaults(ini):
    assert load(ini("")) == load()


def test_overrides_override_the_file(ini):
    path = ini("[crawld]\ndata-dir = /from/file\njob-slots = 3\n"
               "[web]\nlisten = 0.0.0.0:8000\n")
    s = load(path, {"data_dir": "/from/flag", "job_slots": 9,
                    "listen": (Listen("127.0.0.2", 9000),)})
    assert s.data_dir == "/from/flag"
    assert s.job_slots == 9
    assert s.listen == (Listen("127.0.0.2", 9000),)


def test_none_overrides_leave_the_file_value(ini):
    s = load(ini("[crawld]\njob-slots = 3\n"), {"job_slots": None, "data_dir": None,
                                                 "listen": None})
    assert s.job_slots == 3
    assert s.data_dir == "./crawld-data"


def test_overrides_without_a_file_override_defaults():
    assert load(None, {"job_slots": 2}).job_slots == 2


def test_several_listen_addresses(ini):
    s = load(ini("[web]\nlisten = 127.0.0.1:7654, [::1]:7655\n"))
    assert s.listen == (Listen("127.0.0.1", 7654), Listen("::1", 7655))


# ------------------------------------------------------------------------- bad values


@pytest.mark.parametrize("section, option, value", [
    ("crawld", "job-slots", "-1"),
    ("crawld", "job-slots", "two"),
    ("crawld", "job-slots", "1.5"),
    ("crawld", "kill-grace", "-0.5"),
    ("crawld", "completed-cap", "-3"),
    ("crawld", "completed-max-age-days", "0"),
    ("crawld", "list-timeout", "0"),
    ("crawld", "max-archive-size", "0"),
    ("crawld", "max-archive-size", "50XB"),
    ("crawld", "max-archive-size", "-5MB"),
    ("crawld", "max-archive-files", "0"),
    ("crawld", "max-unpacked-size", "lots"),
    ("crawld", "log-level", "verbose"),
    ("web", "listen", "localhost"),
    ("web", "listen", "127.0.0.1:70000"),
    ("web", "listen", ""),
])
def test_bad_value_raises_config_error_naming_section_and_option(ini, section, option, value):
    with pytest.raises(ConfigError) as info:
        load(ini(f"[{section}]\n{option} = {value}\n"))
    assert f"[{section}] {option}" in str(info.value)


def test_nan_kill_grace_is_rejected(ini):
    with pytest.raises(ConfigError) as info:
        load(ini("[crawld]\nkill-grace = nan\n"))
    assert "[crawld] kill-grace" in str(info.value)


def test_zero_is_allowed_where_documented(ini):
    s = load(ini("[crawld]\njob-slots = 0\nkill-grace = 0\ncompleted-cap = 0\n"))
    assert (s.job_slots, s.kill_grace, s.completed_cap) == (0, 0, 0)


def test_unknown_option_is_rejected_with_its_name(ini):
    path = ini("[crawld]\njob-slot = 3\n")
    with pytest.raises(ConfigError, match=r"\[crawld\] job-slot: unknown option"):
        load(path)


def test_option_in_unknown_section_is_rejected(ini):
    with pytest.raises(ConfigError, match=r"\[server\] listen: unknown option"):
        load(ini("[server]\nlisten = 127.0.0.1:7654\n"))


def test_option_in_the_wrong_section_is_rejected(ini):
    with pytest.raises(ConfigError, match=r"\[crawld\] listen: unknown option"):
        load(ini("[crawld]\nlisten = 127.0.0.1:7654\n"))


def test_missing_file_is_reported(tmp_path):
    path = str(tmp_path / "nope.ini")
    with pytest.raises(ConfigError, match="cannot read config file") as info:
        load(path)
    assert path in str(info.value)


def test_directory_as_file_is_reported(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file"):
        load(str(tmp_path))


def test_unreadable_file_is_reported(ini, monkeypatch):
    path = ini("[crawld]\n")

    def denied(name, *args, **kwargs):
        raise PermissionError(13, "Permission denied", name)

    # chmod 0 does not stop root, so make the open itself fail as it would for a user
    monkeypatch.setattr(config, "open", denied, raising=False)
    with pytest.raises(ConfigError, match="cannot read config file") as info:
        load(path)
    assert path in str(info.value) and "Permission denied" in str(info.value)


def test_file_that_is_not_utf8_is_reported(tmp_path):
    path = tmp_path / "latin1.ini"
    path.write_bytes(b"[crawld]\ndata-dir = /srv/caf\xe9\n")
    with pytest.raises(ConfigError):
        load(str(path))


def test_file_that_is_not_ini_is_reported(ini):
    with pytest.raises(ConfigError, match="not valid INI"):
        load(ini("job-slots = 3\n"))  # no section header


def test_missing_python_interpreter_is_rejected(ini, tmp_path):
    missing = str(tmp_path / "no-python")
    with pytest.raises(ConfigError, match=r"\[crawld\] python"):
        load(ini(f"[crawld]\npython = {missing}\n"))
    with pytest.raises(ConfigError, match=r"\[crawld\] python"):
        load(None, {"python": missing})


# ---------------------------------------------------------------------- parse helpers


@pytest.mark.parametrize("text, expected", [
    ("500", 500),
    ("500B", 500),
    ("64KB", 64 * 1024),
    ("64k", 64 * 1024),
    ("50MB", 50 * 1024 * 1024),
    ("50 MB", 50 * 1024 * 1024),
    ("50mb", 50 * 1024 * 1024),
    ("1G", 1024 ** 3),
    ("2GB", 2 * 1024 ** 3),
    (" 7M ", 7 * 1024 * 1024),
])
def test_parse_size_accepts_binary_units(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "MB", "1.5MB", "50TB", "-1", "5 M B"])
def test_parse_size_rejects_other_text(text):
    with pytest.raises(ValueError):
        parse_size(text)


def test_parse_listen_ipv4_and_name():
    assert parse_listen("127.0.0.1:7654") == Listen("127.0.0.1", 7654)
    assert parse_listen("localhost:80") == Listen("localhost", 80)


def test_parse_listen_ipv6_in_brackets():
    listen = parse_listen("[::1]:7654")
    assert listen == Listen("::1", 7654)
    assert str(listen) == "[::1]:7654"


def test_ipv6_listen_from_the_file(ini):
    assert load(ini("[web]\nlisten = [::1]:7654\n")).listen == (Listen("::1", 7654),)


@pytest.mark.parametrize("text", ["::1:7654", "127.0.0.1", "127.0.0.1:", ":7654",
                                  "127.0.0.1:65536", "[::1]", "host:port"])
def test_parse_listen_rejects_malformed(text):
    with pytest.raises(ValueError):
        parse_listen(text)
