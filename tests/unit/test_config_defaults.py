"""``crawld config --defaults``: the INI file of the defaults, shipped in the package.

pip installs the package, not the source tree's config.example.ini, so the package carries
the same text as ``defaults.ini``. These tests hold the two copies, the options the loader
knows and the configuration reference (docs/configuration.md) to each other.
"""
from __future__ import annotations

import configparser
import re
from pathlib import Path

import pytest

from crawld import cli, config

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config.example.ini"
PACKAGED = ROOT / "daemon" / "crawld" / "defaults.ini"


def options_of(text: str) -> tuple[dict[tuple[str, str], str], set[tuple[str, str]]]:
    """The options an INI text sets, ``{(section, option): value}``, and those it shows
    only commented out (``# option = example``), each under the section it appears in."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(text)
    present = {(s, o): parser[s][o] for s in parser.sections() for o in parser[s]}
    commented: set[tuple[str, str]] = set()
    section = ""
    for line in text.splitlines():
        header = re.fullmatch(r"\[([a-z]+)\]\s*", line)
        if header:
            section = header.group(1)
        found = re.fullmatch(r"#\s*([a-z-]+)\s*=.*", line)
        if found and section:
            commented.add((section, found.group(1)))
    return present, commented


def printed(capsys: pytest.CaptureFixture) -> str:
    assert cli.main(["config", "--defaults"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    return out


def test_the_package_ships_the_example_unchanged():
    assert PACKAGED.read_bytes() == EXAMPLE.read_bytes(), \
        "daemon/crawld/defaults.ini and config.example.ini must stay identical"
    assert config.defaults_ini() == EXAMPLE.read_text(encoding="utf-8")
    setup = (ROOT / "setup.py").read_text()
    assert re.search(r"package_data=\{\"crawld\": \[[^]]*\"defaults\.ini\"", setup)


def test_crawld_config_defaults_prints_the_packaged_file(capsys):
    assert printed(capsys) == PACKAGED.read_text(encoding="utf-8")


def test_every_printed_option_loads_as_its_embedded_default(capsys, tmp_path):
    text = printed(capsys)
    present, commented = options_of(text)
    defaults = config.Settings()
    for (section, option), value in present.items():
        path = tmp_path / f"{section}-{option}.ini"
        path.write_text(f"[{section}]\n{option} = {value}\n", encoding="utf-8")
        field = config.OPTIONS[(section, option)][0]  # KeyError: an option crawld lacks
        assert getattr(config.load(str(path)), field) == getattr(defaults, field), \
            f"[{section}] {option} = {value!r} is not the default"
    whole = tmp_path / "crawld.ini"
    whole.write_text(text, encoding="utf-8")
    assert config.load(str(whole)) == defaults
    # every option is there: set to its default, or (no default to write) commented out
    assert set(present) | commented == set(config.OPTIONS)
    assert not set(present) & commented


def test_the_commented_options_are_those_without_a_writable_default(capsys):
    _, commented = options_of(printed(capsys))
    # python's default is the running interpreter and auth's is "unset"; the others show
    # an example of a value, their default being empty
    assert {("crawld", "python"), ("web", "auth")} <= commented
    for section, option in commented - {("crawld", "python"), ("web", "auth")}:
        field = config.OPTIONS[(section, option)][0]
        assert not getattr(config.Settings(), field), (section, option)


def test_the_configuration_reference_and_the_example_list_the_same_options():
    doc = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `(\w+)` \| `([a-z-]+)` \|", doc, re.M)
    assert len(rows) == len(set(rows)), "an option documented twice"
    present, commented = options_of(EXAMPLE.read_text(encoding="utf-8"))
    assert set(rows) == set(present) | commented


def test_serve_help_points_at_crawld_config_defaults(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["serve", "--help"])
    assert exit_.value.code == 0
    help_text = " ".join(capsys.readouterr().out.split())
    assert "'crawld config --defaults' prints every option" in help_text
    assert "config.example.ini" not in help_text  # not installed by pip


def test_crawld_config_without_defaults_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["config"])
    assert exit_.value.code == 2
    assert "--defaults" in capsys.readouterr().err
