"""Zip a project folder the way push-project.json expects: ``<name>/scrapy.cfg`` and the
rest of the project under one top folder named after the project.

The name is scrapy.cfg's ``[deploy] project`` (what the daemon reads from the archive);
a folder without scrapy.cfg (browser scripts only) is named after the folder. What a
checkout carries besides the project (version control, caches, virtualenvs, earlier
builds) is left out, so that a push sends what runs.
"""
from __future__ import annotations

import configparser
import io
import os
import zipfile
from typing import Optional

#: Folder names never packed: VCS data, byte-code caches, environments, build output.
SKIPPED_DIRS = frozenset({".git", ".hg", ".svn", "__pycache__", ".venv", "venv", ".tox",
                          ".mypy_cache", ".pytest_cache", "build", "dist", ".eggs",
                          "node_modules"})
SKIPPED_SUFFIXES = (".pyc", ".pyo")


class PackError(Exception):
    """The folder cannot be pushed as it is (the message says why)."""


def project_name(folder: str) -> str:
    """The name the daemon will give the project packed from ``folder``."""
    cfg = os.path.join(folder, "scrapy.cfg")
    if not os.path.exists(cfg):
        if not os.path.isdir(os.path.join(folder, "scripts")):
            raise PackError(f"{folder} holds neither scrapy.cfg nor a scripts/ folder: "
                            "not a Scrapy project or a browser-script project")
        return os.path.basename(os.path.abspath(folder))
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(cfg, encoding="utf-8")
        return parser.get("deploy", "project").strip()
    except (configparser.Error, UnicodeDecodeError) as exc:
        raise PackError(f"{cfg}: cannot read [deploy] project ({exc}); add\n"
                        "[deploy]\nproject = <name>") from None


def pack(folder: str, name: Optional[str] = None) -> tuple[str, bytes]:
    """``(name, zip bytes)`` of ``folder``'s project; files in sorted order, so the same
    folder packs to the same entries."""
    if not os.path.isdir(folder):
        raise PackError(f"{folder}: no such folder")
    name = name or project_name(folder)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for root, dirs, files in os.walk(folder):
            dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS
                             and not d.endswith(".egg-info"))
            for filename in sorted(files):
                if filename.endswith(SKIPPED_SUFFIXES):
                    continue
                full = os.path.join(root, filename)
                if not os.path.isfile(full):  # a socket, a dangling link...
                    continue
                relative = os.path.relpath(full, folder).replace(os.sep, "/")
                zf.write(full, f"{name}/{relative}")
    return name, buffer.getvalue()
