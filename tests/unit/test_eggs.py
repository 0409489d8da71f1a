"""Eggs and version names as scrapyd 1.6 treats them (eggs.py), with literal values."""
from __future__ import annotations

import io
import zipfile

import pytest

from crawld import archive, eggs
from crawld.errors import ProjectError, TooLarge

LIMITS = archive.Limits(max_files=100, max_unpacked=1024 * 1024)


def egg(files: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    return buf.getvalue()


GOOD = {"EGG-INFO/entry_points.txt": "[scrapy]\nsettings = demo.settings\n",
        "EGG-INFO/PKG-INFO": "Name: project\n", "demo/__init__.py": "",
        "demo/settings.py": "BOT_NAME = 'demo'\n"}


def test_version_names_are_sanitized_as_scrapyd_names_its_egg_files():
    assert eggs.version_name("1.0") == "1_0"
    assert eggs.version_name("r23-abc_d") == "r23-abc_d"
    assert eggs.version_name("a b/c") == "a_b_c"
    with pytest.raises(ProjectError):
        eggs.version_name("")
    with pytest.raises(ProjectError):
        eggs.version_name("x" * 129)


def test_versions_sort_as_pep_440_when_all_are_else_as_text():
    assert eggs.sorted_versions(["10", "9", "1700000000"]) == ["9", "10", "1700000000"]
    assert eggs.sorted_versions(["2.0", "10.0", "1.0rc1"]) == ["1.0rc1", "2.0", "10.0"]
    assert eggs.sorted_versions(["r10", "r9", "1_0"]) == ["1_0", "r10", "r9"]


def test_an_egg_is_validated_and_its_settings_module_found(tmp_path):
    inspected = eggs.inspect(egg(GOOD), LIMITS)
    assert inspected.settings_module == "demo.settings" and inspected.strip == 0
    eggs.unpack(egg(GOOD), inspected, str(tmp_path / "v"))
    assert (tmp_path / "v" / "demo" / "settings.py").is_file()
    cfg = (tmp_path / "v" / "scrapy.cfg").read_text()
    assert "[settings]\ndefault = demo.settings\n" in cfg


@pytest.mark.parametrize("files, message", [
    ({"demo/__init__.py": ""}, "has no EGG-INFO/entry_points.txt"),
    ({"EGG-INFO/entry_points.txt": "[console_scripts]\nx = y\n"}, "no [scrapy] settings"),
    ({"EGG-INFO/entry_points.txt": "[scrapy]\nsettings = not a module\n"},
     "is not a module name"),
    ({**GOOD, "../escape.py": ""}, "'..' is not allowed"),
])
def test_a_bad_egg_is_refused_before_anything_is_written(files, message):
    with pytest.raises(ProjectError, match=message.replace("[", r"\[").replace(".", r"\.")):
        eggs.inspect(egg(files), LIMITS)


def test_an_egg_is_held_to_the_archive_limits():
    with pytest.raises(TooLarge, match="the egg has 4 entries"):
        eggs.inspect(egg(GOOD), archive.Limits(max_files=3, max_unpacked=1024))
    with pytest.raises(ProjectError, match="the egg is not a zip file"):
        eggs.inspect(b"not a zip", LIMITS)
