"""Code bundles (issue 14): a project version's files as a deterministic zip, by hash.

A worker fetches the code an attempt runs from the daemon, ``GET /cluster/code/<hash>.zip``,
and caches it unpacked by that hash: the same files make the same bytes (names sorted,
fixed timestamps, modes kept, no ``__pycache__``), so their sha256 names them. Bundles
are built in a thread and kept under ``<data>/bundles/<hash>.zip``; which version has
which hash is remembered while the daemon runs (a restart builds it again, to the same
hash).
"""
from __future__ import annotations

import hashlib
import io
import os
import re
import stat
import zipfile
from typing import Any, Callable, Optional

from twisted.internet.defer import Deferred, succeed
from twisted.internet.threads import deferToThread

#: Every zip entry's time: zip's earliest (1980-01-01), so the bytes depend on content only.
FIXED_TIME = (1980, 1, 1, 0, 0, 0)
HASH_RE = re.compile(r"[0-9a-f]{64}")
SKIPPED_DIRS = {"__pycache__"}


def build(directory: str) -> bytes:
    """The zip of ``directory``'s files (blocking: run in a thread). Links are not
    followed (a project's files are regular files and folders)."""
    names: list[str] = []
    for root, dirs, files in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS)
        for name in files:
            if name.endswith(".pyc"):
                continue
            full = os.path.join(root, name)
            if stat.S_ISREG(os.lstat(full).st_mode):
                names.append(os.path.relpath(full, directory))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for rel in sorted(names):
            full = os.path.join(directory, rel)
            info = zipfile.ZipInfo(rel.replace(os.sep, "/"), FIXED_TIME)
            info.external_attr = (stat.S_IMODE(os.lstat(full).st_mode) | stat.S_IFREG) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            with open(full, "rb") as fh:
                zf.writestr(info, fh.read())
    return out.getvalue()


def store(bundle_dir: str, data: bytes) -> str:
    """Keep ``data`` as ``<bundle_dir>/<sha256>.zip`` (atomically; blocking); returns
    the hash."""
    digest = hashlib.sha256(data).hexdigest()
    target = os.path.join(bundle_dir, f"{digest}.zip")
    if not os.path.exists(target):
        os.makedirs(bundle_dir, mode=0o750, exist_ok=True)
        temp = f"{target}.{os.getpid()}.tmp"
        with open(temp, "wb") as fh:
            fh.write(data)
        os.replace(temp, target)
    return digest


class Bundles:
    """Builds (once per version dir, in a thread) and finds code bundles."""

    def __init__(self, bundle_dir: str,
                 to_thread: Callable[..., Deferred] = deferToThread) -> None:
        self.dir = bundle_dir
        self.to_thread = to_thread
        self.hashes: dict[str, str] = {}         # version dir -> hash
        self.building: dict[str, list[Deferred]] = {}

    def hash_of(self, directory: str) -> "Deferred[str]":
        """The hash of the bundle of ``directory`` (a project version's), built when
        this daemon has not built it yet; concurrent asks share one build."""
        if directory in self.hashes:
            return succeed(self.hashes[directory])
        waiter: Deferred = Deferred()
        if directory in self.building:
            self.building[directory].append(waiter)
            return waiter
        self.building[directory] = [waiter]

        def done(result: Any) -> None:
            if isinstance(result, str):
                self.hashes[directory] = result
            for d in self.building.pop(directory, []):
                d.callback(result) if isinstance(result, str) else d.errback(result)
        self.to_thread(lambda: store(self.dir, build(directory))).addBoth(done)
        return waiter

    def path(self, digest: str) -> Optional[str]:
        """The file of a bundle by its hash (None for anything that is not one)."""
        if not HASH_RE.fullmatch(digest):
            return None
        return os.path.join(self.dir, f"{digest}.zip")

    def read(self, digest: str) -> "Deferred[Optional[bytes]]":
        """A bundle's bytes (None when unknown), read in a thread."""
        target = self.path(digest)
        if target is None:
            return succeed(None)

        def read() -> Optional[bytes]:
            try:
                with open(target, "rb") as fh:
                    return fh.read()
            except FileNotFoundError:
                return None
        return self.to_thread(read)
