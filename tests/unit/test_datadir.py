"""A data directory at start-up (crawld.datadir): new, intact, or left by a crawld whose
database is gone; and Projects.adopt, which ``--reinit`` uses to register projects found
on disk. (tests/integration/test_data_dir.py starts the real daemon over such folders.)"""
from __future__ import annotations

import os

import pytest
from twisted.internet.defer import maybeDeferred
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.python.failure import Failure

from crawld import datadir
from crawld.database import Database
from crawld.errors import ProjectError
from crawld.store import InlineExecutor, Store
from tests.unit.fakes import result
from tests.unit.test_projects_scripts import failure_of, tree, world  # noqa: F401


def make(root, *paths: str, db: bytes | None = None) -> str:
    """A data directory holding ``paths`` (folders end in /) and crawld.db = ``db``."""
    for rel in paths:
        path = os.path.join(root, rel)
        os.makedirs(path if rel.endswith("/") else os.path.dirname(path), exist_ok=True)
        if not rel.endswith("/"):
            open(path, "w").close()
    if db is not None:
        with open(os.path.join(root, "crawld.db"), "wb") as fh:
            fh.write(db)
    return str(root)


def real_db(root) -> bytes:
    Database(os.path.join(root, "made.db")).close()
    with open(os.path.join(root, "made.db"), "rb") as fh:
        return fh.read()


@pytest.mark.parametrize("paths", [
    (), ("projects/", "logs/", "files/", "tmp/"),        # a new directory, as crawld makes it
    ("credentials.json", "crawld.lock", "projects/.staging/x/")])  # keys made before start
def test_a_new_data_directory_is_no_loss(tmp_path, paths):
    state = datadir.assess(make(tmp_path, *paths))
    assert state.problem == "missing" and not state.lost
    assert datadir.refusal(state, reinit=False) is None


@pytest.mark.parametrize("paths, said", [
    (("projects/demo/1/",), "1 project in projects/"),
    (("logs/a.out", "logs/a.err"), "2 log files in logs/"),
    (("files/0b3a5a52/",), "1 artifact folder in files/"),
])
@pytest.mark.parametrize("db, problem, words", [
    (None, "missing", "is missing"), (b"", "empty", "is empty (0 bytes)")])
def test_a_lost_database_beside_what_crawld_left_is_refused(tmp_path, paths, said, db,
                                                           problem, words):
    state = datadir.assess(make(tmp_path, *paths, db=db))
    assert state.problem == problem and state.lost
    message = datadir.refusal(state, reinit=False)
    assert str(tmp_path / "crawld.db") in message and words in message
    assert said in message and "--reinit" in message and "backup" in message
    assert datadir.refusal(state, reinit=True) is None


def test_an_intact_database_is_no_problem(tmp_path):
    state = datadir.assess(make(tmp_path, "projects/demo/1/", db=real_db(tmp_path)))
    assert state.problem == "" and not state.lost
    assert datadir.refusal(state, reinit=False) is None


def test_an_empty_database_whose_wal_has_content_is_sqlites_to_replay(tmp_path):
    root = make(tmp_path, "projects/demo/1/", db=b"")
    with open(os.path.join(root, "crawld.db-wal"), "wb") as fh:
        fh.write(b"\0" * 64)
    assert not datadir.assess(root).lost


@pytest.mark.parametrize("content", [b"not a database at all", b"SQLite", b"\0" * 4096])
def test_a_file_that_is_not_sqlite_is_refused_even_in_a_new_directory(tmp_path, content):
    state = datadir.assess(make(tmp_path, db=content))
    assert state.problem == "damaged" and state.lost
    message = datadir.refusal(state, reinit=False)
    assert "not an SQLite database" in message and "--reinit" in message
    assert "crawld.db.damaged-" in message


def test_set_aside_renames_a_damaged_database_and_old_wal_files_never_deletes(tmp_path):
    root = make(tmp_path, "crawld.db-wal", "crawld.db-shm", db=b"junk")
    state = datadir.assess(root)
    moved = datadir.set_aside(state, now=1_800_000_000)
    assert sorted(os.path.basename(m) for m in moved) == sorted(os.listdir(root))
    assert not os.path.exists(state.db_path)
    [kept] = [m for m in moved if ".damaged-" in m]
    with open(kept, "rb") as fh:
        assert fh.read() == b"junk"


def test_set_aside_leaves_a_missing_database_missing(tmp_path):
    root = make(tmp_path, "projects/demo/1/")
    assert datadir.set_aside(datadir.assess(root)) == []
    assert sorted(os.listdir(root)) == ["projects"]


def test_project_names_are_the_folders_of_projects(tmp_path):
    root = make(tmp_path, "b/1/", "a/2/", ".staging/x/", "stray.txt")
    assert datadir.project_names(root) == ["a", "b"]
    assert datadir.project_names(str(tmp_path / "none")) == []


def test_rebuild_registers_what_it_can_and_goes_on_past_what_it_cannot(tmp_path):
    adopted = []

    class Projects:
        def adopt(self, name):
            adopted.append(name)
            if name == "bad":
                return maybeDeferred(lambda: (_ for _ in ()).throw(ProjectError("no")))
            return maybeDeferred(lambda: type("P", (), {"version": 3, "spiders": ("s",),
                                                        "scripts": ()})())
    root = make(tmp_path, "projects/bad/1/", "projects/good/3/", "projects/not a name/1/")
    done = result(datadir.rebuild(Projects(), root, lambda f, *a: maybeDeferred(f, *a)))
    assert done == ["good"] and adopted == ["bad", "good"]


# ------------------------------------------------------------------ Projects.adopt


def test_adopt_registers_the_highest_version_of_a_scripts_project(world):  # noqa: F811
    reactor, store, projects, root = world
    tree(root, ["tool/1/scripts/old.py", "tool/2/scripts/shoot.py", "tool/10/scripts/a.py",
                "tool/10/scripts/b.py", "tool/x/scripts/c.py"])
    project = result(projects.adopt("tool"))
    assert (project.name, project.version, project.scripts) == ("tool", 10, ("a", "b"))
    assert project.path == str(root / "tool" / "10") and reactor.spawned == []
    assert result(store.projects()) == [project] and projects.get("tool") is project
    assert sorted(os.listdir(root / "tool")) == ["1", "10", "2", "x"], "nothing deleted"


def test_adopt_lists_spiders_again_and_falls_back_to_a_version_that_lists(world):  # noqa: F811,E501
    reactor, store, projects, root = world
    tree(root, ["proj/1/scrapy.cfg", "proj/2/scrapy.cfg"])
    adopting = projects.adopt("proj")
    first, = reactor.spawned
    assert first["path"] == str(root / "proj" / "2") and first["args"][-1] == "list"
    first["proto"].transport.loseConnection = lambda: None
    first["proto"].errReceived(b"ImportError: no module named gone\n")
    first["proto"].processExited(Failure(ProcessTerminated(1, None, None)))
    first["proto"].processEnded(Failure(ProcessTerminated(1, None, None)))
    second = reactor.spawned[1]
    assert second["path"] == str(root / "proj" / "1")
    second["proto"].transport.loseConnection = lambda: None
    second["proto"].outReceived(b"alpha\nbeta\n")
    second["proto"].processExited(Failure(ProcessDone(0)))
    second["proto"].processEnded(Failure(ProcessDone(0)))
    project = result(adopting)
    assert (project.version, project.spiders) == (1, ("alpha", "beta"))


def test_adopt_says_why_no_version_would_do(world):  # noqa: F811
    reactor, store, projects, root = world
    tree(root, ["empty/3/README.txt", "empty/1/notes/"])
    failure = failure_of(projects.adopt("empty"))
    assert failure.check(ProjectError)
    assert "version 3: neither scrapy.cfg nor scripts" in str(failure.value)
    assert "version 1: neither" in str(failure.value)
    tree(root, ["none/"])
    assert "no version folder" in str(failure_of(projects.adopt("none")).value)
    assert result(store.projects()) == []


def test_a_store_over_a_rebuilt_database_is_usable(tmp_path):
    root = make(tmp_path, "projects/demo/1/", db=b"")
    store = Store(os.path.join(root, "crawld.db"), InlineExecutor())
    assert result(store.projects()) == []
    assert os.path.getsize(os.path.join(root, "crawld.db")) > 0
