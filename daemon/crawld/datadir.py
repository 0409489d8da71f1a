"""The data directory at start-up: new, intact, or left by a crawld whose database is gone;
and what ``crawld serve --reinit`` rebuilds from disk.

SQLite creates a database where there is none, so a ``crawld.db`` deleted or truncated
while crawld was stopped used to give a fresh, empty daemon (no projects, counters at 0)
beside the projects and logs of the old one, orphaned. Now crawld refuses to start then,
naming the file and the ways out: restore a backup, or ``--reinit``, which starts a new
database and registers again the projects found in ``projects/<name>/<version>/``. A
directory that holds nothing of an earlier crawld (a new one) still starts with no flag.

``assess``, ``set_aside``, ``project_names`` and ``not_rebuilt`` read or rename files
(run them in a thread); ``refusal`` is pure; ``rebuild`` drives ``Projects.adopt``.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional, Protocol

from twisted.internet.defer import inlineCallbacks
from twisted.logger import Logger

from .archive import valid_name
from .errors import CrawldError

log = Logger(namespace="crawld")

DB_NAME = "crawld.db"
SQLITE_HEADER = b"SQLite format 3\x00"
#: Folders where an earlier crawld leaves what it did: a push, a job's logs, artifacts.
EVIDENCE = {"projects": "project", "logs": "log file", "files": "artifact folder"}
BACKUPS = "docs/operations.md, \"Backups\""
CANNOT = "schedules, job history and counters, which only the database held"


@dataclass(frozen=True)
class State:
    """What start-up found: the database's condition and what else the directory holds.

    ``problem``: "" (the database is there, or there is none yet), "missing", "empty"
    (0 bytes) or "damaged" (not an SQLite file). ``leftovers``: e.g. "2 projects"."""

    root: str
    problem: str = ""
    leftovers: tuple[str, ...] = ()

    @property
    def db_path(self) -> str:
        return os.path.join(self.root, DB_NAME)

    @property
    def lost(self) -> bool:
        """The database of an earlier crawld is gone or unreadable (a new data
        directory has no database and nothing else: that is not a loss)."""
        return self.problem == "damaged" or bool(self.problem and self.leftovers)


def _count(folder: str) -> int:
    try:
        with os.scandir(folder) as entries:
            return sum(1 for e in entries if not e.name.startswith("."))
    except FileNotFoundError:
        return 0


def assess(root: str) -> State:
    """Look at the database file and at what the directory holds besides (blocking)."""
    path = os.path.join(root, DB_NAME)
    leftovers = []
    for folder, noun in EVIDENCE.items():
        n = _count(os.path.join(root, folder))
        if n:
            leftovers.append(f"{n} {noun}{'s' if n != 1 else ''} in {folder}/")
    try:
        with open(path, "rb") as fh:
            head = fh.read(len(SQLITE_HEADER))
    except FileNotFoundError:
        return State(root, "missing", tuple(leftovers))
    if not head:
        wal = path + "-wal"  # a WAL with content is SQLite's to replay, not a loss
        if os.path.exists(wal) and os.path.getsize(wal) > 0:
            return State(root, "", tuple(leftovers))
        return State(root, "empty", tuple(leftovers))
    if head != SQLITE_HEADER:
        return State(root, "damaged", tuple(leftovers))
    return State(root, "", tuple(leftovers))


def refusal(state: State, reinit: bool) -> Optional[str]:
    """Why crawld must not start over ``state`` (None: it may), naming the file and the
    ways out."""
    if not state.lost or reinit:
        return None
    db = state.db_path
    if state.problem == "damaged":
        return (f"the database {db} is not an SQLite database (damaged, or another "
                f"file). Restore it from a backup ({BACKUPS}), or start once with "
                f"'crawld serve --reinit': it keeps that file as {DB_NAME}.damaged-<time>, "
                "makes a new database and registers again the projects found in "
                f"projects/ (not {CANNOT})")
    what = "is missing" if state.problem == "missing" else "is empty (0 bytes)"
    return (f"the database {db} {what}, but {state.root} holds what an earlier crawld "
            f"left ({', '.join(state.leftovers)}): a new database would silently forget "
            f"it. Restore {DB_NAME} from a backup ({BACKUPS}), or start once with "
            "'crawld serve --reinit' to make a new database and register again the "
            f"projects found in projects/ (not {CANNOT})")


def set_aside(state: State, now: Optional[float] = None) -> list[str]:
    """Before a rebuild: rename a damaged database, and the WAL files of a lost one
    (they belong to the old database), out of SQLite's way. Never deletes; returns the
    new names (blocking)."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.localtime(now))
    names = ([DB_NAME] if state.problem == "damaged" else []) + [
        DB_NAME + "-wal", DB_NAME + "-shm"]
    moved = []
    for name in names:
        path = os.path.join(state.root, name)
        if os.path.exists(path):
            kept = f"{path}.damaged-{stamp}" if name == DB_NAME else f"{path}.old-{stamp}"
            os.rename(path, kept)
            moved.append(kept)
    return moved


def project_names(projects_root: str) -> list[str]:
    """Folders of ``projects/`` (not ``.staging``), sorted (blocking)."""
    try:
        with os.scandir(projects_root) as entries:
            return sorted(e.name for e in entries
                          if e.is_dir(follow_symlinks=False) and not e.name.startswith("."))
    except FileNotFoundError:
        return []


def not_rebuilt(root: str) -> str:
    """What a rebuild leaves as it was: the history, and the files of earlier jobs."""
    logs, files = _count(os.path.join(root, "logs")), _count(os.path.join(root, "files"))
    return (f"could not rebuild {CANNOT}: schedule recurring jobs again. {logs} log "
            f"file(s) in logs/ and {files} artifact folder(s) in files/ belong to jobs "
            "no longer known: they are left as they are (retention will not remove "
            "them; delete them when you no longer need them)")


class Adopter(Protocol):
    """What a rebuild needs of ``projects.Projects``."""

    def adopt(self, name: str) -> Any:
        """Register ``projects/<name>/`` again; a Deferred firing with its Project."""


@inlineCallbacks
def rebuild(projects: Adopter, root: str, to_thread: Callable[..., Any]):
    """Register again every project found on disk, each on its own (one that fails is
    logged and skipped), then say what could not be rebuilt. Fires with the names of the
    projects registered."""
    registered = []
    for name in (yield to_thread(project_names, os.path.join(root, "projects"))):
        if not valid_name(name):
            log.warn("--reinit: could not rebuild project {name!r}: not a project name; "
                     "its folder is left in projects/", name=name)
            continue
        try:
            project = yield projects.adopt(name)
        except Exception as exc:  # one project's problem must not stop the others
            why = exc.msg if isinstance(exc, CrawldError) else repr(exc)
            log.warn("--reinit: could not rebuild project {name}: {why}; its files are "
                     "left in projects/{name}/ (push it again)", name=name, why=why)
            continue
        registered.append(name)
        log.info("--reinit: project {name} version {version} registered again (spiders: "
                 "{spiders}; scripts: {scripts})", name=name, version=project.version,
                 spiders=", ".join(project.spiders) or "none",
                 scripts=", ".join(project.scripts) or "none")
    log.warn("--reinit: {note}", note=(yield to_thread(not_rebuilt, root)))
    return registered
