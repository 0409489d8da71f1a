"""Project archives: validate a zip completely before anything is written, then unpack.

Every entry is checked (names stay inside, no links or device files, bounded count and
size) and the project is identified by ``<name>/scrapy.cfg`` whose ``[deploy] project``
names it, as scrapy-do's client builds archives. A project of browser scripts only
needs no scrapy.cfg: ``<name>/scripts/*.py`` is enough. Pure functions over bytes; the
caller runs them in a thread.
"""
from __future__ import annotations

import configparser
import contextlib
import io
import lzma
import os
import posixpath
import re
import stat
import struct
import zipfile
import zlib
from dataclasses import dataclass
from typing import Iterator, Optional

from .errors import ProjectError, TooLarge

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
MAX_RATIO = 200  # uncompressed/compressed beyond this, for a big member, says zip bomb
#: Sizes from this up are checked for their ratio: an entry, and the whole archive
#: (else 450 entries of 1 MiB each, a 505 KB upload, would unpack to 451 MB).
BOMB_FLOOR = 1024 * 1024
#: The compression methods zipfile reads (stored, deflate, bzip2, lzma).
METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate",
           zipfile.ZIP_BZIP2: "bzip2", zipfile.ZIP_LZMA: "lzma"}
ENCRYPTED = 0x1  # general purpose flag bit 0
#: What zipfile raises for an entry it cannot read: a bad CRC or local header
#: (BadZipFile), a damaged stream (zlib.error, lzma.LZMAError, OSError from bz2,
#: EOFError for one cut short), a method or flag it does not support.
READ_ERRORS = (zipfile.BadZipFile, zlib.error, lzma.LZMAError, EOFError, OSError,
               NotImplementedError, RuntimeError, ValueError, struct.error)


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
    #: what each member's name starts with and unpacking strips; None: ``<name>/``
    #: (an egg's members are at its top: "")
    prefix: Optional[str] = None
    #: an egg's settings module (its ``scrapy`` entry point); None for an archive
    settings_module: Optional[str] = None

    @property
    def strip(self) -> int:
        """How many characters of each member's name unpacking drops."""
        return len(self.name) + 1 if self.prefix is None else len(self.prefix)


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
    if info.flag_bits & ENCRYPTED:
        raise ProjectError(f"archive entry {name!r}: encrypted entries are not supported")
    if info.compress_type not in METHODS:
        raise ProjectError(f"archive entry {name!r}: compression method "
                           f"{info.compress_type} is not supported; use "
                           f"{', '.join(METHODS.values())}")
    if _bomb(info.file_size, info.compress_size):
        raise ProjectError(f"archive entry {name!r}: compression ratio over {MAX_RATIO} "
                           "(looks like a zip bomb)")


def _bomb(unpacked: int, packed: int) -> bool:
    """Whether ``unpacked`` bytes from ``packed`` is a ratio only a zip bomb has."""
    return unpacked >= BOMB_FLOOR and unpacked > MAX_RATIO * max(packed, 1)


@contextlib.contextmanager
def reading(info: zipfile.ZipInfo) -> Iterator[None]:
    """Reads of ``info`` in this block: zipfile's errors become a ProjectError (400)
    naming the entry. (Only reads: a full disk while writing is not the client's fault.)"""
    try:
        yield
    except READ_ERRORS as exc:
        raise ProjectError(f"archive entry {info.filename!r} cannot be read: "
                           f"{exc or type(exc).__name__}") from None


def _project_name(zf: zipfile.ZipFile, cfg: zipfile.ZipInfo) -> str:
    parser = configparser.ConfigParser(interpolation=None)
    with reading(cfg):
        text = zf.read(cfg)
    try:
        parser.read_string(text.decode("utf-8"))
        return parser.get("deploy", "project").strip()
    except (configparser.Error, UnicodeDecodeError) as exc:
        raise ProjectError(f"{cfg.filename}: cannot read [deploy] project: {exc}") from exc


def validated(data: bytes, limits: Limits, what: str = "archive"
              ) -> tuple[zipfile.ZipFile, list[zipfile.ZipInfo]]:
    """The zip in ``data`` and its entries, every one checked (names stay inside, no
    links or special files, no encryption, known methods, no bomb) and the whole held
    to ``limits``: what a pushed archive and an uploaded egg both go through.
    Raises ProjectError/TooLarge; writes nothing."""
    if not zipfile.is_zipfile(io.BytesIO(data)):
        raise ProjectError(f"the {what} is not a zip file")
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        infos = zf.infolist()
    except READ_ERRORS as exc:
        raise ProjectError(f"the {what} is not a valid zip file: {exc}") from exc
    if len(infos) > limits.max_files:
        raise TooLarge(f"the {what} has {len(infos)} entries; max-archive-files is "
                       f"{limits.max_files}")
    total = packed = 0
    for info in infos:
        _check_member(info)
        total += info.file_size
        packed += info.compress_size
    if total > limits.max_unpacked:
        raise TooLarge(f"the {what} unpacks to {total} bytes; max-unpacked-size is "
                       f"{limits.max_unpacked}")
    # sizes are what the archive declares: the smaller of them and the upload's own
    if _bomb(total, min(packed, len(data))):
        raise ProjectError(f"the {what} unpacks to {total} bytes from {len(data)}: a "
                           f"compression ratio over {MAX_RATIO} (looks like a zip bomb)")
    return zf, infos


def inspect(data: bytes, limits: Limits) -> Inspected:
    """Validate an archive and find its project. Raises ProjectError/TooLarge, writes nothing."""
    zf, infos = validated(data, limits)
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


def _copy(zf: zipfile.ZipFile, info: zipfile.ZipInfo, target: str) -> None:
    """Write one entry to ``target``. zipfile stops at the size the entry declares (the
    size the limits were checked against) and checks the CRC at its end; what it cannot
    read is the archive's fault (400), what cannot be written is not (a full disk)."""
    with open(target, "wb") as out:
        with reading(info):
            src = zf.open(info)
        with src:
            while True:
                with reading(info):
                    chunk = src.read(1024 * 1024)
                if not chunk:
                    break
                out.write(chunk)


def unpack(data: bytes, inspected: Inspected, dest: str) -> None:
    """Write the project's files (the contents of ``<name>/``) into ``dest``."""
    zf = zipfile.ZipFile(io.BytesIO(data))
    root = os.path.realpath(dest)
    os.makedirs(root, mode=0o755, exist_ok=True)
    os.chmod(root, 0o755)
    strip = inspected.strip
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
            _copy(zf, info, target)
            os.chmod(target, 0o644)
        except (FileExistsError, IsADirectoryError, NotADirectoryError) as exc:
            raise ProjectError(f"archive entry {info.filename!r} clashes with another "
                               f"entry: {exc.strerror}") from None
