"""Eggs (what ``scrapyd-deploy`` uploads) and version names, as scrapyd 1.6 treats them.

An egg is a zip whose top holds the project's packages and ``EGG-INFO/``; its
``entry_points.txt`` names the settings module under ``[scrapy] settings``. It goes
through the same checks as a pushed archive (``archive.validated``), is unpacked whole
into a version directory, and gets a ``scrapy.cfg`` there naming that module: from then
on it is a project directory like any other (``scrapy list``, jobs, the zygote), which
is what scrapyd's runner achieves by activating the egg and setting
``SCRAPY_SETTINGS_MODULE``. Pure functions; the caller runs ``inspect`` and ``unpack``
in a thread.
"""
from __future__ import annotations

import configparser
import os
import re

from packaging.version import InvalidVersion, Version

from . import archive
from .errors import ProjectError

ENTRY_POINTS = "EGG-INFO/entry_points.txt"
MODULE_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
#: The longest version name accepted (scrapyd has no bound; a file name has one).
MAX_VERSION = 128

SCRAPY_CFG = """# Written by crawld: the settings module of this egg's scrapy entry point.
[settings]
default = {module}
"""


def version_name(version: str) -> str:
    """The name scrapyd stores a version under (its egg's file name): every character
    other than ASCII letters, digits, ``_`` and ``-`` becomes ``_``. ``1.0`` is
    listed as ``1_0``, and ``_version=1.0`` finds it, as in scrapyd."""
    if not version or len(version) > MAX_VERSION:
        raise ProjectError(f"a version is 1 to {MAX_VERSION} characters")
    return re.sub(r"[^A-Za-z0-9_-]", "_", version)


def sorted_versions(names: list[str]) -> list[str]:
    """Version names in scrapyd's order, the last being the one that runs by default:
    as PEP 440 versions when every name is one, else as text."""
    try:
        return sorted(names, key=Version)
    except InvalidVersion:
        return sorted(names)


def settings_module(text: str) -> str:
    """The ``[scrapy] settings`` entry point of an egg's ``entry_points.txt``."""
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(text)
        value = parser.get("scrapy", "settings").strip()
    except (configparser.Error, UnicodeDecodeError):
        raise ProjectError(f"the egg's {ENTRY_POINTS} has no [scrapy] settings entry point "
                           "(scrapyd-deploy writes one: entry_points={'scrapy': "
                           "['settings = <project>.settings']})") from None
    module = value.split(":", 1)[0].strip()
    if not MODULE_RE.fullmatch(module):
        raise ProjectError(f"the egg's settings entry point {value!r} is not a module name")
    return module


def inspect(data: bytes, limits: archive.Limits) -> archive.Inspected:
    """Validate an egg and find its settings module; raises ProjectError/TooLarge."""
    zf, infos = archive.validated(data, limits, what="egg")
    entry = next((i for i in infos if i.filename == ENTRY_POINTS), None)
    if entry is None:
        raise ProjectError(f"the egg has no {ENTRY_POINTS}: not an egg built from a Scrapy "
                           "project (scrapyd-deploy, or python setup.py bdist_egg)")
    with archive.reading(entry):
        text = zf.read(entry)
    try:
        module = settings_module(text.decode("utf-8"))
    except UnicodeDecodeError:
        raise ProjectError(f"the egg's {ENTRY_POINTS} is not UTF-8 text") from None
    return archive.Inspected("", tuple(infos), prefix="", settings_module=module)


def unpack(data: bytes, inspected: archive.Inspected, dest: str) -> None:
    """Write the egg's files into ``dest``, and the ``scrapy.cfg`` that names its
    settings module (replacing any the egg carries: scrapyd, too, takes the entry
    point's)."""
    archive.unpack(data, inspected, dest)
    path = os.path.join(dest, "scrapy.cfg")
    if os.path.isdir(path):
        raise ProjectError("the egg holds a folder named scrapy.cfg")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(SCRAPY_CFG.format(module=inspected.settings_module))
    os.chmod(path, 0o644)
