"""Projects: push (validate, stage, list spiders, store a new version), look up, remove.

Each push or egg upload is unpacked once, into ``<data>/projects/<name>/<number>``; jobs
run from there and never unpack anything. A push replaces the project's previous pushes
(their directories are deleted once no running job uses them); eggs are versions kept
until deleted (``delete_version``), as scrapyd keeps them. The current version, which
runs when a job names none, is the latest push or, after an egg upload or a deletion,
the last version in scrapyd's order (eggs.sorted_versions). Nothing is stored when any
step fails.
"""
from __future__ import annotations

import os
import re
import shutil
import uuid
from typing import Any, Callable, Mapping, Optional

from twisted.internet.defer import DeferredLock, inlineCallbacks, succeed
from twisted.internet.threads import deferToThread
from twisted.logger import Logger

from . import archive, eggs, listing, tree
from .commands import RunAs
from .errors import Conflict, NotFound, ProjectError, TooLarge
from .model import Project, Version
from .store import Store

log = Logger(namespace="crawld.projects")


class Projects:
    """The set of pushed projects, cached in memory and persisted in the store."""

    def __init__(self, reactor: Any, store: Store, root: str, python: str,
                 limits: archive.Limits, list_timeout: float,
                 in_use: Callable[[], set[str]], base_env: Optional[Mapping[str, str]] = None,
                 run_as: Optional[RunAs] = None,
                 to_thread: Callable[..., Any] = deferToThread) -> None:
        self.reactor = reactor
        self.store = store
        self.root = root
        self.python = python
        self.limits = limits
        self.list_timeout = list_timeout
        self.in_use = in_use  # directories of running jobs
        self.base_env = dict(os.environ if base_env is None else base_env)
        self.to_thread = to_thread
        self.cache: dict[str, Project] = {}
        #: project -> version name -> Version, every stored version
        self.versions: dict[str, dict[str, Version]] = {}
        self.removing: set[str] = set()
        self.run_as = run_as  # [crawld] run-as: scrapy list runs as it
        self.lock = DeferredLock()

    @inlineCallbacks
    def load(self):
        """Read the projects from the store (at start-up)."""
        for project in (yield self.store.projects()):
            # Resolved here, not read from the row: the data directory may have moved.
            path = os.path.join(self.root, project.name, str(project.version))
            self.cache[project.name] = project.evolve(path=path)
        for version in (yield self.store.versions()):
            path = os.path.join(self.root, version.project, str(version.number))
            self.versions.setdefault(version.project, {})[version.name] = version.evolve(
                path=path)
        # A push interrupted by a crash leaves a staging directory or an unused version,
        # and maybe its `scrapy list` still running (hung in the project's code).
        staging = os.path.join(self.root, ".staging")
        pids = yield self.to_thread(tree.find_lists, staging)
        killed = yield self.to_thread(tree.kill_found, pids)
        if killed:
            log.warn("killed {n} process(es) of a 'scrapy list' a previous crawld left "
                     "running: pid(s) {pids}", n=killed, pids=", ".join(map(str, pids)))
        yield self.to_thread(shutil.rmtree, staging, True)
        for name in self.cache:
            yield self._collect(name)

    # -- reads ------------------------------------------------------------------------
    def names(self) -> list[str]:
        return sorted(self.cache)

    def get(self, name: str) -> Project:
        if name in self.removing:
            raise Conflict(f"project {name!r} is being removed")
        try:
            return self.cache[name]
        except KeyError:
            raise NotFound(f"unknown project {name!r}") from None

    def path(self, name: str) -> Optional[str]:
        project = self.cache.get(name)
        return project.path if project else None

    def script_path(self, name: str, script: str) -> str:
        """The file of a project's script (a few directory listings; NotFound if gone)."""
        project = self.get(name)
        path = find_scripts(project.path).get(script) if script in project.scripts else None
        if path is None:
            raise NotFound(f"unknown script {name}/{script}")
        return path

    def spider_count(self) -> int:
        return sum(len(p.spiders) for p in self.cache.values())

    # -- push -------------------------------------------------------------------------
    def push(self, data: bytes, max_size: Optional[int] = None):
        """Validate, unpack and list an archive; store it as the project's new version."""
        if max_size is not None and len(data) > max_size:
            raise TooLarge(f"the archive is {len(data)} bytes; max-archive-size is {max_size}")
        return self.lock.run(self._push, data)

    @inlineCallbacks
    def _staged(self, name: str, unpack: Callable[[str], None],
                check: Callable[[str], Any]):
        """Unpack into a new staging directory (``unpack(dir)``, in a thread), run
        ``check(dir)`` there (fires with what it finds), then move it to the project's
        next version directory. Fires with (its number, its path, what check found);
        any failure removes the staging directory, so nothing is stored."""
        staging = os.path.join(self.root, ".staging", uuid.uuid4().hex)
        yield self.to_thread(_traversable, os.path.join(self.root, ".staging"))
        try:
            yield self.to_thread(unpack, staging)
            found = yield check(staging)
            number = self._next_number(name)
            final = os.path.join(self.root, name, str(number))
            yield self.to_thread(_move, staging, final)
        except BaseException:
            yield self.to_thread(shutil.rmtree, staging, True)
            raise
        return number, final, found

    @inlineCallbacks
    def _push(self, data: bytes):
        inspected = yield self.to_thread(archive.inspect, data, self.limits)
        name = inspected.name
        number, final, (spiders, scripts) = yield self._staged(
            name, lambda staging: archive.unpack(data, inspected, staging),
            lambda staging: self._check_push(inspected, name, staging))
        now = self.reactor.seconds()
        project = Project(name, number, final, tuple(spiders), now, tuple(scripts))
        version = Version(name, str(number), number, final, tuple(spiders), now, "archive",
                          tuple(scripts))
        # a push replaces the project's earlier pushes (its eggs stay)
        drop = [v.name for v in self.versions.get(name, {}).values() if v.kind == "archive"]
        yield self._record(version, project, drop)
        log.info("project {name} version {version} pushed with spiders {spiders} and "
                 "scripts {scripts}", name=name, version=number,
                 spiders=", ".join(spiders) or "(none)", scripts=", ".join(scripts) or "(none)")
        yield self._collect(name)
        return project

    @inlineCallbacks
    def _check_push(self, inspected: archive.Inspected, name: str, staging: str):
        """A staged push's spiders and scripts; refused when it has neither, or when it
        would remove a spider or script that schedules still name."""
        scripts = sorted((yield self.to_thread(find_scripts, staging)))
        if not inspected.scrapy and not scripts:
            raise ProjectError("no project found: scripts/ holds no script (files "
                               "starting with _ are helpers, not scripts)")
        spiders = (yield self._list_spiders(staging, name)) if inspected.scrapy else []
        for kind, found in (("spider", spiders), ("script", scripts)):
            wanted = yield self.store.scheduled_spiders(name, kind)
            missing = sorted(set(wanted) - set(found))
            if missing:
                raise Conflict(f"{kind}(s) {', '.join(missing)} would be removed but "
                               "have scheduled jobs; cancel those jobs first")
        return spiders, scripts

    def _next_number(self, name: str) -> int:
        """The directory number of a project's next version: above every one in use."""
        numbers = [v.number for v in self.versions.get(name, {}).values()]
        old = self.cache.get(name)
        return max(numbers + [old.version if old else 0]) + 1

    @inlineCallbacks
    def _record(self, version: Version, current: Project, drop: list[str] = ()):
        """Store ``version`` with ``current`` as the project's current version, forget
        ``drop``; then the caches (the store first: a failure changes nothing)."""
        yield self.store.put_version(version, current, drop)
        known = self.versions.setdefault(version.project, {})
        for old in drop:
            known.pop(old, None)
        known[version.name] = version
        self.cache[current.name] = current

    # -- eggs and versions ------------------------------------------------------------
    def add_egg(self, name: str, version: str, data: bytes,
                max_size: Optional[int] = None):
        """Store an egg as version ``version`` of project ``name`` (scrapyd's
        addversion.json): validated, unpacked, listed; a version of that name is
        replaced. Fires with the Version (its name as scrapyd stores it)."""
        if not archive.valid_name(name):
            raise ProjectError(f"invalid project name {name!r}: it must match "
                               f"{archive.NAME_RE.pattern}")
        stored = eggs.version_name(version)
        if max_size is not None and len(data) > max_size:
            raise TooLarge(f"the egg is {len(data)} bytes; max-archive-size is {max_size}")
        if name in self.removing:
            raise Conflict(f"project {name!r} is being removed")
        return self.lock.run(self._add_egg, name, stored, data)

    @inlineCallbacks
    def _add_egg(self, name: str, stored: str, data: bytes):
        inspected = yield self.to_thread(eggs.inspect, data, self.limits)
        number, final, spiders = yield self._staged(
            name, lambda staging: eggs.unpack(data, inspected, staging),
            lambda staging: self._list_spiders(staging, name))
        version = Version(name, stored, number, final, tuple(spiders),
                          self.reactor.seconds(), "egg")
        yield self._record(version, self._current_of(name, version))
        log.info("project {name}: egg version {version} stored with spiders {spiders}",
                 name=name, version=stored, spiders=", ".join(spiders) or "(none)")
        yield self._collect(name)
        return version

    def _current_of(self, name: str, added: Optional[Version] = None,
                    without: Optional[str] = None) -> Optional[Project]:
        """The project's current version in scrapyd's sense (the last in its order) once
        ``added`` is stored and ``without`` is gone; None when none is left."""
        known = dict(self.versions.get(name, {}))
        if added is not None:
            known[added.name] = added
        known.pop(without, None)
        if not known:
            return None
        last = known[eggs.sorted_versions(list(known))[-1]]
        return Project(name, last.number, last.path, last.spiders, last.pushed, last.scripts)

    def version_names(self, name: str) -> list[str]:
        """A project's versions in scrapyd's order (none for an unknown project)."""
        return eggs.sorted_versions(list(self.versions.get(name, {})))

    def get_version(self, name: str, version: str) -> Version:
        """A stored version, by its name or as scrapyd finds it (``1.0`` is ``1_0``)."""
        known = self.versions.get(name, {})
        found = known.get(version) or known.get(re.sub(r"[^A-Za-z0-9_-]", "_", version))
        if found is None:
            raise NotFound(f"unknown version {version!r} of project {name!r}")
        return found

    def version_path(self, name: str, version: str) -> Optional[str]:
        """The directory of a stored version (None when it is gone)."""
        try:
            return self.get_version(name, version).path
        except NotFound:
            return None

    def delete_version(self, name: str, version: str):
        """Delete one version (scrapyd's delversion.json); refused while a running job
        uses it. Deleting a project's last version deletes the project, as in scrapyd."""
        found = self.get_version(name, version)
        return self.lock.run(self._delete_version, found)

    @inlineCallbacks
    def _delete_version(self, version: Version):
        name = version.project
        if version.path in self.in_use():
            raise Conflict(f"version {version.name!r} of project {name!r} is used by a "
                           "running job; cancel it or wait for it to end")
        pinned = yield self.store.version_users(name, version.name)
        if pinned:
            raise Conflict(f"version {version.name!r} of project {name!r} is used by a "
                           f"running job or one waiting to run: {', '.join(pinned)}; "
                           "cancel them first")
        current = self._current_of(name, without=version.name)
        if current is None:
            active = yield self.store.active_project_names()
            if name in active:
                raise Conflict(f"version {version.name!r} is the last of project {name!r}, "
                               "which has scheduled, pending or running jobs; cancel them "
                               "first")
        yield self.store.delete_version(name, version.name, current)
        self.versions.get(name, {}).pop(version.name, None)
        if current is None:
            self.versions.pop(name, None)
            self.cache.pop(name, None)
        else:
            self.cache[name] = current
        yield self.to_thread(shutil.rmtree, version.path, True)
        log.info("project {name}: version {version} deleted", name=name, version=version.name)

    def _list_spiders(self, project_dir: str, name: str):
        """``scrapy list`` in an unpacked project, under list-timeout (listing.py)."""
        return listing.list_spiders(self.reactor, self.python, self.base_env, self.run_as,
                                    self.list_timeout, self.to_thread, project_dir, name)

    # -- rebuild (crawld serve --reinit) ----------------------------------------------
    def adopt(self, name: str):
        """Register ``projects/<name>/`` again after the database was lost: its highest
        version whose spiders list (``scrapy list`` runs again) or that has scripts.
        Fires with the Project; fails with ProjectError saying why no version would do."""
        return self.lock.run(self._adopt, name)

    @inlineCallbacks
    def _adopt(self, name: str):
        versions = yield self.to_thread(_versions, os.path.join(self.root, name))
        if not versions:
            raise ProjectError(f"projects/{name}/ holds no version folder (1, 2, ...)")
        problems = []
        for version in versions:  # the highest first
            path = os.path.join(self.root, name, str(version))
            try:
                scripts = sorted((yield self.to_thread(find_scripts, path)))
                scrapy = yield self.to_thread(os.path.isfile, os.path.join(path, "scrapy.cfg"))
                if not scrapy and not scripts:
                    raise ProjectError("neither scrapy.cfg nor scripts/*.py")
                spiders = (yield self._list_spiders(path, name)) if scrapy else []
                pushed = yield self.to_thread(os.path.getmtime, path)
            except (ProjectError, OSError) as exc:
                problems.append(f"version {version}: {getattr(exc, 'msg', exc)}")
                continue
            project = Project(name, version, path, tuple(spiders), pushed, tuple(scripts))
            kind = "egg" if (yield self.to_thread(_egg_dir, path)) else "archive"
            yield self._record(Version(name, str(version), version, path, tuple(spiders),
                                       pushed, kind, tuple(scripts)), project)
            return project
        raise ProjectError("; ".join(problems))

    # -- remove -----------------------------------------------------------------------
    @inlineCallbacks
    def remove(self, name: str):
        """Remove a project and all its stored versions; refused while jobs need it."""
        self.get(name)
        yield self.lock.acquire()
        self.removing.add(name)  # from here on, nothing new may be scheduled for it
        try:
            active = yield self.store.active_project_names()
            if name in active:
                raise Conflict(f"project {name!r} has scheduled, pending or running jobs; "
                               "cancel them first")
            yield self.store.delete_project(name)
            self.cache.pop(name, None)
            self.versions.pop(name, None)
            yield self.to_thread(shutil.rmtree, os.path.join(self.root, name), True)
            log.info("project {name} removed", name=name)
        finally:
            self.removing.discard(name)
            self.lock.release()

    def collect(self, name: str):
        """Delete versions of a project that are neither current nor used by a running job.

        Under the projects lock: a push between unpacking a version and recording it must
        not see that version deleted as unused.
        """
        return self.lock.run(self._collect, name)

    def _collect(self, name: str):
        if not archive.valid_name(name):  # e.g. "" for a browse job: nothing to collect
            return succeed(None)
        current = self.path(name)
        keep = (set(self.in_use()) | ({current} if current else set())
                | {v.path for v in self.versions.get(name, {}).values()})
        return self.to_thread(_collect, os.path.join(self.root, name), keep)


SCRIPT_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


def find_scripts(project_dir: str) -> dict[str, str]:
    """Browser scripts of an unpacked project: name -> path.

    A script is ``scripts/<name>.py`` at the project's top or in one of its packages
    (``<package>/scripts/``, beside ``spiders/``). Files starting with ``_`` are helpers,
    not scripts. The same name in two places is refused: a job must know which one runs.
    """
    found: dict[str, str] = {}
    tops = [project_dir] + sorted(
        os.path.join(project_dir, e) for e in os.listdir(project_dir)
        if not e.startswith(".") and os.path.isdir(os.path.join(project_dir, e)))
    for top in tops:
        folder = os.path.join(top, "scripts")
        if not os.path.isdir(folder):
            continue
        for entry in sorted(os.listdir(folder)):
            stem, ext = os.path.splitext(entry)
            if (ext != ".py" or stem.startswith("_")
                    or not os.path.isfile(os.path.join(folder, entry))):
                continue
            if not SCRIPT_NAME_RE.fullmatch(stem):
                raise ProjectError(f"script file {entry!r}: a script name must match "
                                   f"{SCRIPT_NAME_RE.pattern}")
            path = os.path.join(folder, entry)
            if stem in found:
                raise ProjectError(f"two scripts are named {stem!r}: "
                                   f"{os.path.relpath(found[stem], project_dir)} and "
                                   f"{os.path.relpath(path, project_dir)}")
            found[stem] = path
    return found


def _versions(project_root: str) -> list[int]:
    """The version folders of a project on disk, highest first (blocking)."""
    try:
        entries = os.listdir(project_root)
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted((int(e) for e in entries if e.isdigit() and e.isascii()
                   and os.path.isdir(os.path.join(project_root, e))), reverse=True)


def _egg_dir(path: str) -> bool:
    """Whether a version directory is an unpacked egg (its scrapy.cfg is crawld's)."""
    try:
        with open(os.path.join(path, "scrapy.cfg"), encoding="utf-8") as fh:
            return fh.readline().startswith(eggs.SCRAPY_CFG.splitlines()[0])
    except (OSError, UnicodeDecodeError):
        return False


def _move(src: str, dest: str) -> None:
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    os.chmod(os.path.dirname(dest), 0o755)  # traversable for a run-as user, any umask
    if os.path.exists(dest):  # a leftover of an interrupted push of this version
        shutil.rmtree(dest)
    os.rename(src, dest)


def _traversable(path: str) -> None:
    """A folder others may pass through but not list (scrapy list runs as run-as)."""
    os.makedirs(path, exist_ok=True)
    os.chmod(path, 0o711)


def _collect(project_root: str, keep: set[str]) -> None:
    try:
        entries = os.listdir(project_root)
    except FileNotFoundError:
        return
    for entry in entries:
        path = os.path.join(project_root, entry)
        if path not in keep:
            shutil.rmtree(path, ignore_errors=True)
