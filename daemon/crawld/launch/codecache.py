"""A worker's cache of project versions: ``<data-dir>/code/<sha256>/``, fetched once.

A project version is named by the sha256 of its deterministic zip (the daemon's
``GET /cluster/code/<hash>.zip``), so a cached directory never goes stale and never
needs asking about again. Two attempts wanting the same hash at once share one fetch
(a lock per hash); the zip is checked against its hash, unpacked in a thread into a
temporary folder beside the cache entry and renamed into place, so a half-unpacked
version is never used (a worker killed meanwhile leaves only a ``.tmp-*`` folder, which
the next start removes).
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
from typing import Callable, Optional

from twisted.internet.defer import Deferred, DeferredLock, inlineCallbacks
from twisted.internet.threads import deferToThread

from .. import archive
from ..errors import ProjectError, TooLarge
from ..projects import find_scripts

HASH_RE = re.compile(r"[0-9a-f]{64}")
#: Bounds on a fetched version: the daemon held its pushes to its own limits already;
#: these only keep a confused or hostile answer from filling the worker's disk.
LIMITS = archive.Limits(max_files=100_000, max_unpacked=4 * 1024 ** 3)


class CodeUnavailable(Exception):
    """The daemon does not have the version (404), or sent something else than it."""


class CodeCache:
    """Project versions by content hash, fetched from the daemon at most once each."""

    def __init__(self, root: str, fetch: Callable[[str], Deferred],
                 to_thread: Callable[..., Deferred] = deferToThread) -> None:
        """``fetch(hash)`` fires with the zip's bytes, or with a Reply (a refusal)."""
        self.root = root
        self.fetch = fetch
        self.to_thread = to_thread
        self.locks: dict[str, DeferredLock] = {}
        self.fetches = 0  # zips fetched from the daemon (tests: never twice per hash)
        self.starting: Optional[str] = None  # the hash of the attempt being started

    def path(self, digest: str) -> str:
        """Where version ``digest`` is (or will be) unpacked."""
        return os.path.join(self.root, digest)

    def clear_partial(self) -> None:
        """Remove the temporary folders of unpacks a killed worker left (blocking)."""
        os.makedirs(self.root, mode=0o755, exist_ok=True)
        for name in os.listdir(self.root):
            if name.startswith(".tmp-"):
                shutil.rmtree(os.path.join(self.root, name), ignore_errors=True)

    @inlineCallbacks
    def get(self, digest: str):
        """Fires with the directory of version ``digest``, fetching it when missing."""
        if not HASH_RE.fullmatch(digest):
            raise CodeUnavailable(f"{digest!r} is not a sha256 hash")
        target = self.path(digest)
        if os.path.isdir(target):
            return target
        lock = self.locks.setdefault(digest, DeferredLock())
        yield lock.acquire()
        try:
            if not os.path.isdir(target):  # another attempt may have fetched it meanwhile
                data = yield self.fetch(digest)
                if not isinstance(data, bytes):
                    raise CodeUnavailable(f"the daemon has no code {digest} "
                                          f"(HTTP {getattr(data, 'code', '?')})")
                self.fetches += 1
                yield self.to_thread(self._install, digest, data)
        finally:
            lock.release()
            if not lock.waiting:
                self.locks.pop(digest, None)
        return target

    def _install(self, digest: str, data: bytes) -> None:
        """Check the zip against its hash, unpack it beside the cache and rename it in
        (blocking: a thread)."""
        got = hashlib.sha256(data).hexdigest()
        if got != digest:
            raise CodeUnavailable(f"code {digest}: the daemon sent a zip whose sha256 is "
                                  f"{got}")
        try:
            _, infos = archive.validated(data, LIMITS, "code zip")
        except (ProjectError, TooLarge) as exc:
            raise CodeUnavailable(f"code {digest}: {exc}") from exc
        os.makedirs(self.root, mode=0o755, exist_ok=True)
        tmp = os.path.join(self.root, f".tmp-{digest}-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            archive.unpack(data, archive.Inspected("", tuple(infos), prefix=""), tmp)
            os.rename(tmp, self.path(digest))
        except ProjectError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise CodeUnavailable(f"code {digest}: {exc}") from exc
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


    def version_dir(self, project: str, digest: str) -> Optional[str]:
        """LocalSettings.version_dir on a worker: the runtime hands the launcher each
        job with its code hash as its ``version``."""
        return self.path(digest) if HASH_RE.fullmatch(digest) else None

    def script_path(self, project: str, script: str) -> str:
        """LocalSettings.script_path on a worker: the script in the version of the
        attempt being started (``starting``, set by the runtime just before it calls
        LocalLauncher.start, which resolves the script before it yields)."""
        if self.starting is None:
            raise RuntimeError(f"no code for script {project}/{script}")
        path = find_scripts(self.path(self.starting)).get(script)
        if path is None:
            raise RuntimeError(f"unknown script {project}/{script} in code {self.starting}")
        return path
