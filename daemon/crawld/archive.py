"""Project archives: validate a zip completely before anything is written, then unpack.

Every entry is checked (names stay inside, no links or device files, bounded count and
size) and the project is identified by ``<name>/scrapy.cfg`` whose ``[deploy] project``
names it, as scrapy-do's client builds archives. A project of browser scripts only
needs no scrapy.cfg: ``<name>/scripts/*.py`` is enough. Pure functions over bytes; the
caller runs them in a thread.
"""
from __future__ import annotations

import configparser
import io
import os
import posixpath
import re
import stat
import zipfile
from dataclasses import dataclass

from .errors import ProjectError, TooLarge

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
MAX_RATIO = 200  # uncompressed/compressed beyond this, for a big member, says zip bomb


@dataclass(frozen=True)
class Limits:
    """Bounds on an archive; see the max-archive-* options."""

    max_files: int
    max_unpacked: int


@dataclass(frozen=True)
class Inspected:
    """A validated archive: the project name and the members under ``<name>/``."""

    name: str
    members: tuple[zipfile.ZipInfo, ...]
    scrapy: bool = True  # has scrapy.cfg (else: browser scripts only)


def valid_name(name: str) -> bool:
    return bool(NAME_RE.fullmatch(name))


def _check_member(info: zipfile.ZipInfo) -> None:
    name = info.filename
    if "\x00" in name or "\\" in name:
        raise ProjectError(f"archive entry {name!r}: forbidden character in name")
    if name.startswith("/") or re.match(r"[A-Za-z]:", name):
        raise ProjectError(f"archive entry {name!r}: absolute paths are not allowed")
    if ".." in name.split("/"):
        raise ProjectError(f"archive entry {name!r}: '..' is not allowed")
    mode = info.external_attr >> 16
    # Many zip writers store permission bits only (no file type): those are plain files.
    if stat.S_IFMT(mode) and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        kind = "links" if stat.S_ISLNK(mode) else "special files"
        raise ProjectError(f"archive entry {name!r}: {kind} are not allowed")
    if (info.file_size > 1024 * 1024 and info.compress_size
            and info.file_size / info.compress_size > MAX_RATIO):
        raise ProjectError(f"archive entry {name!r}: compression ratio over {MAX_RATIO} "
                           "(looks like a zip bomb)")


def _project_name(zf: zipfile.ZipFile, cfg: zipfile.ZipInfo) -> str:
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(zf.read(cfg).decode("utf-8"))
        return parser.get("deploy", "project").strip()
    except (configparser.Error, UnicodeDecodeError) as exc:
        raise ProjectError(f"{cfg.filename}: cannot read [deploy] project: {exc}") from exc


def inspect(data: bytes, limits: Limits) -> Inspected:
    """Validate an archive and find its project. Raises ProjectError/TooLarge, writes nothing."""
    if not zipfile.is_zipfile(io.BytesIO(data)):
        raise ProjectError("the archive is not a zip file")
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        infos = zf.infolist()
    except (zipfile.BadZipFile, ValueError) as exc:
        raise ProjectError(f"the archive is not a valid zip file: {exc}") from exc
    if len(infos) > limits.max_files:
        raise TooLarge(f"the archive has {len(infos)} entries; max-archive-files is "
                       f"{limits.max_files}")
    total = 0
    for info in infos:
        _check_member(info)
        total += info.file_size
    if total > limits.max_unpacked:
        raise TooLarge(f"the archive unpacks to {total} bytes; max-unpacked-size is "
                       f"{limits.max_unpacked}")
    cfgs = [i for i in infos if re.fullmatch(r"[^/]+/scrapy\.cfg", i.filename)]
    if not cfgs:
        return _scripts_only(infos)
    for cfg in cfgs:
        name = _project_name(zf, cfg)
        if cfg.filename.split("/")[0] != name:
            continue
        if not valid_name(name):
            raise ProjectError(f"invalid project name {name!r}: it must match "
                               f"{NAME_RE.pattern}")
        prefix = name + "/"
        members = tuple(i for i in infos if i.filename.startswith(prefix))
        return Inspected(name, members)
    names = ", ".join(repr(_project_name(zf, c)) for c in cfgs)
    raise ProjectError(f"scrapy.cfg names project {names} but the archive has no folder "
                       "of that name holding it; expected <name>/scrapy.cfg")


def _scripts_only(infos: list[zipfile.ZipInfo]) -> Inspected:
    """A project with no scrapy.cfg: the one top folder holding ``scripts/*.py``.

    Other top-level entries (a README, macOS's __MACOSX/) are ignored, as they are
    beside a Scrapy project."""
    tops = {i.filename.split("/")[0] for i in infos
            if re.fullmatch(r"[^/]+/scripts/[^/_][^/]*\.py", i.filename)}
    if len(tops) != 1:
        raise ProjectError("no project found: the archive needs <name>/scrapy.cfg (a Scrapy "
                           "project) or <name>/scripts/*.py (browser scripts)"
                           + (f"; found scripts in {', '.join(sorted(tops))}" if tops else ""))
    name = tops.pop()
    if not valid_name(name):
        raise ProjectError(f"invalid project name {name!r}: it must match {NAME_RE.pattern}")
    members = tuple(i for i in infos if i.filename.startswith(name + "/"))
    return Inspected(name, members, scrapy=False)


def _folders(root: str, path: str) -> None:
    """Create ``path`` (under ``root``) with every folder 0755, whatever the umask."""
    if os.path.isdir(path):
        return
    if path != root:
        _folders(root, os.path.dirname(path))
    os.makedirs(path, mode=0o755, exist_ok=True)
    os.chmod(path, 0o755)


def unpack(data: bytes, inspected: Inspected, dest: str) -> None:
    """Write the project's files (the contents of ``<name>/``) into ``dest``."""
    zf = zipfile.ZipFile(io.BytesIO(data))
    root = os.path.realpath(dest)
    os.makedirs(root, mode=0o755, exist_ok=True)
    os.chmod(root, 0o755)
    strip = len(inspected.name) + 1
    for info in inspected.members:
        rel = posixpath.normpath(info.filename[strip:] or ".")
        target = os.path.realpath(os.path.join(root, rel))
        if target != root and not target.startswith(root + os.sep):
            raise ProjectError(f"archive entry {info.filename!r} escapes the project")
        try:
            if info.is_dir():
                os.makedirs(target, mode=0o755, exist_ok=True)
                os.chmod(target, 0o755)  # whatever the umask: jobs may run as another user
                continue
            _folders(root, os.path.dirname(target))
            with zf.open(info) as src, open(target, "wb") as out:
                while chunk := src.read(1024 * 1024):
                    out.write(chunk)
            os.chmod(target, 0o644)
        except (FileExistsError, IsADirectoryError, NotADirectoryError) as exc:
            raise ProjectError(f"archive entry {info.filename!r} clashes with another "
                               f"entry: {exc.strerror}") from None
