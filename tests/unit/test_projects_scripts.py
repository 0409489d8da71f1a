"""Browser scripts in projects: finding them, scripts-only archives, and pushes that carry
them (with an inline to_thread and, for ``scrapy list``, the fake process reactor)."""
from __future__ import annotations

import io
import os
import uuid
import zipfile

import pytest
from twisted.internet.defer import maybeDeferred
from twisted.internet.error import ProcessDone
from twisted.python.failure import Failure

from crawld import projects as projects_module
from crawld.archive import Limits, inspect
from crawld.errors import Conflict, NotFound, ProjectError
from crawld.model import Actor, Job, JobStatus, Project
from crawld.projects import Projects, find_scripts
from crawld.store import InlineExecutor, Store
from tests.unit.fakes import FakeProcessReactor, result

LIMITS = Limits(max_files=100, max_unpacked=10 * 1024 * 1024)
T0 = 1_800_000_000.0


def tree(root, files) -> str:
    for rel in files:
        path = os.path.join(root, rel)
        if rel.endswith("/"):
            os.makedirs(path, exist_ok=True)
            continue
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write("async def run(page, job):\n    pass\n")
    return str(root)


def make_zip(names, data: bytes = b"async def run(page, job): pass\n") -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in names:
            zf.writestr(name, b"" if name.endswith("/") else data)
    return buf.getvalue()


def failure_of(d):
    out = []
    d.addErrback(out.append)
    assert out, "the Deferred has not failed"
    return out[0]


# ------------------------------------------------------------------------ find_scripts


def test_scripts_at_the_top_and_in_packages_are_found(tmp_path):
    root = tree(tmp_path, [
        "scripts/shoot.py", "scripts/_helpers.py", "scripts/__init__.py",
        "scripts/notes.txt", "scripts/data.json", "scripts/sub/deeper.py",
        "myproj/__init__.py", "myproj/scripts/login-check.py", "myproj/scripts/_util.py",
        "myproj/spiders/a.py", "myproj/deep/scripts/not_found.py",
        ".hidden/scripts/secret.py", "other/scripts/Report_2.py", "scripts.py"])
    found = find_scripts(root)
    assert found == {
        "shoot": os.path.join(root, "scripts", "shoot.py"),
        "login-check": os.path.join(root, "myproj", "scripts", "login-check.py"),
        "Report_2": os.path.join(root, "other", "scripts", "Report_2.py"),
    }


def test_a_project_without_scripts_has_none(tmp_path):
    assert find_scripts(tree(tmp_path, ["myproj/spiders/a.py", "scrapy.cfg"])) == {}
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "scripts").write_text("a file, not a folder")
    assert find_scripts(str(tmp_path / "plain")) == {}


@pytest.mark.parametrize("name", ["bad name", "-dash-first", "a.b", "é", "x" * 65,
                                  "semi;colon"])
def test_bad_script_names_are_refused(tmp_path, name):
    root = tree(tmp_path, [f"scripts/{name}.py", "scripts/fine.py"])
    with pytest.raises(ProjectError, match="a script name must match"):
        find_scripts(root)


def test_the_longest_name_is_accepted(tmp_path):
    name = "x" * 64
    assert list(find_scripts(tree(tmp_path, [f"scripts/{name}.py"]))) == [name]


@pytest.mark.parametrize("places", [
    ("scripts/shoot.py", "pkg/scripts/shoot.py"),
    ("a/scripts/shoot.py", "b/scripts/shoot.py"),
])
def test_the_same_name_twice_is_refused(tmp_path, places):
    root = tree(tmp_path, places)
    with pytest.raises(ProjectError, match="two scripts are named 'shoot'") as caught:
        find_scripts(root)
    assert all(p in str(caught.value) for p in places), "both places are named"


def test_a_helper_and_a_script_of_the_same_stem_do_not_clash(tmp_path):
    root = tree(tmp_path, ["scripts/_shoot.py", "pkg/scripts/shoot.py"])
    assert list(find_scripts(root)) == ["shoot"]


# ------------------------------------------------------------------ scripts-only archive


def test_a_scripts_only_archive_is_named_by_its_top_folder():
    data = make_zip(["tool/", "tool/scripts/", "tool/scripts/shoot.py",
                     "tool/scripts/_util.py", "tool/README.md", "tool/data/x.json"])
    found = inspect(data, LIMITS)
    assert found.name == "tool" and found.scrapy is False
    assert sorted(i.filename for i in found.members) == [
        "tool/", "tool/README.md", "tool/data/x.json", "tool/scripts/",
        "tool/scripts/_util.py", "tool/scripts/shoot.py"]


def test_a_scripts_only_archive_without_folder_entries_is_accepted():
    assert inspect(make_zip(["tool/scripts/a.py"]), LIMITS).name == "tool"


@pytest.mark.parametrize("names", [
    ["tool/README.md", "tool/main.py"],
    ["tool/scripts/notes.txt"],
    ["tool/scripts/"],
    ["tool/pkg/scripts/a.py"],          # package scripts need a scrapy.cfg project
    ["tool/scripts/sub/a.py"],
    ["scripts/a.py"],                   # no top folder: "scripts" is not a project
])
def test_an_archive_without_top_level_scripts_is_refused(names):
    with pytest.raises(ProjectError, match="no project found"):
        inspect(make_zip(names), LIMITS)


def test_two_top_folders_with_scripts_are_refused():
    with pytest.raises(ProjectError, match="found scripts in a, b"):
        inspect(make_zip(["a/scripts/x.py", "b/scripts/y.py"]), LIMITS)


@pytest.mark.parametrize("extra", [["b/"], ["README.md"], ["__MACOSX/a/scripts/._x.py"]])
def test_other_top_entries_beside_a_scripts_project_are_ignored(extra):
    found = inspect(make_zip(["a/scripts/x.py", *extra]), LIMITS)
    assert found.name == "a" and not found.scrapy
    assert [m.filename for m in found.members] == ["a/scripts/x.py"]


def test_a_scripts_only_project_name_is_validated():
    with pytest.raises(ProjectError, match="invalid project name"):
        inspect(make_zip(["bad name/scripts/a.py"]), LIMITS)


def test_every_entry_is_still_checked_in_a_scripts_only_archive():
    with pytest.raises(ProjectError, match="'..' is not allowed"):
        inspect(make_zip(["tool/scripts/a.py", "tool/scripts/../../../evil.py"]), LIMITS)


def test_a_scrapy_project_may_carry_scripts():
    cfg = b"[settings]\ndefault = proj.settings\n\n[deploy]\nproject = proj\n"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("proj/scrapy.cfg", cfg)
        zf.writestr("proj/proj/__init__.py", "")
        zf.writestr("proj/scripts/shoot.py", "")
    found = inspect(buf.getvalue(), LIMITS)
    assert found.name == "proj" and found.scrapy is True
    assert "proj/scripts/shoot.py" in {i.filename for i in found.members}


# ------------------------------------------------------------------------------- push


@pytest.fixture
def world(tmp_path, monkeypatch):
    sent: list = []
    monkeypatch.setattr(projects_module.tree, "signal_tree",
                        lambda pid, sig, known=None, leader=True: sent.append((pid, sig)))
    reactor = FakeProcessReactor()
    reactor.advance(T0)
    store = Store(":memory:", InlineExecutor())
    root = tmp_path / "projects"
    projects = Projects(reactor, store, str(root), "/py", LIMITS, list_timeout=30,
                        in_use=set, base_env={"PATH": "/bin"},
                        to_thread=lambda f, *a: maybeDeferred(f, *a))
    return reactor, store, projects, root


def scripts_zip(*names: str, top: str = "tool") -> bytes:
    return make_zip([f"{top}/scripts/{n}.py" for n in names] + [f"{top}/lib/util.py"])


def template_for(store: Store, project: str, script: str) -> Job:
    job = Job(id=str(uuid.uuid4()), status=JobStatus.SCHEDULED, actor=Actor.USER,
              schedule="every 1 hours", project=project, spider=script, created=T0,
              updated=T0, kind="script", next_fire=T0 + 3600)
    return result(store.add_job(job))


def staging_left(root) -> list[str]:
    staging = root / ".staging"
    return os.listdir(staging) if staging.exists() else []


def test_push_of_a_scripts_only_project(world):
    reactor, store, projects, root = world
    project = result(projects.push(scripts_zip("shoot", "b-check")))
    assert project == Project("tool", 1, str(root / "tool" / "1"), (), T0,
                              ("b-check", "shoot"))
    assert reactor.spawned == [], "no scrapy list for a project without scrapy.cfg"
    assert result(store.projects()) == [project]
    assert projects.get("tool") is project
    path = projects.script_path("tool", "shoot")
    assert path == str(root / "tool" / "1" / "scripts" / "shoot.py") and os.path.isfile(path)
    assert (root / "tool" / "1" / "lib" / "util.py").is_file()
    with pytest.raises(NotFound):
        projects.script_path("tool", "nope")
    assert staging_left(root) == []


def test_a_push_that_drops_a_scheduled_script_is_refused_and_leaves_nothing(world):
    reactor, store, projects, root = world
    result(projects.push(scripts_zip("shoot", "other")))
    template_for(store, "tool", "shoot")
    template_for(store, "elsewhere", "other")  # another project's script does not count
    failure = failure_of(projects.push(scripts_zip("other")))
    assert failure.check(Conflict)
    assert "script(s) shoot would be removed but have scheduled jobs" in str(failure.value)
    assert projects.get("tool").version == 1
    assert [p.version for p in result(store.projects())] == [1]
    assert sorted(os.listdir(root / "tool")) == ["1"] and staging_left(root) == []


def test_a_new_version_replaces_the_old_one_and_its_files(world):
    reactor, store, projects, root = world
    result(projects.push(scripts_zip("shoot", "old")))
    template_for(store, "tool", "shoot")
    project = result(projects.push(scripts_zip("shoot", "new")))
    assert (project.version, project.scripts) == (2, ("new", "shoot"))
    assert sorted(os.listdir(root / "tool")) == ["2"], "the unused version is collected"
    assert projects.script_path("tool", "new").endswith(os.path.join("tool", "2", "scripts",
                                                                     "new.py"))
    with pytest.raises(NotFound):
        projects.script_path("tool", "old")


def test_a_push_with_two_scripts_of_one_name_stores_nothing(world):
    reactor, store, projects, root = world
    data = make_zip(["tool/scripts/shoot.py", "tool/pkg/scripts/shoot.py"])
    failure = failure_of(projects.push(data))
    assert failure.check(ProjectError) and "two scripts are named" in str(failure.value)
    assert result(store.projects()) == [] and projects.names() == []
    assert staging_left(root) == []


def test_a_push_with_a_bad_script_name_stores_nothing(world):
    reactor, store, projects, root = world
    failure = failure_of(projects.push(scripts_zip("bad name")))
    assert failure.check(ProjectError) and "a script name must match" in str(failure.value)
    assert projects.names() == [] and staging_left(root) == []


def test_push_of_a_scrapy_project_with_scripts_lists_its_spiders(world):
    reactor, store, projects, root = world
    cfg = b"[settings]\ndefault = proj.settings\n\n[deploy]\nproject = proj\n"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("proj/scrapy.cfg", cfg)
        zf.writestr("proj/proj/__init__.py", "")
        zf.writestr("proj/proj/scripts/shoot.py", "")
    pushed = projects.push(buf.getvalue())
    outcome: list = []
    pushed.addBoth(outcome.append)
    assert outcome == [], "waiting for scrapy list"
    [listing] = reactor.spawned
    assert listing["args"][-1] == "list" and listing["executable"] == "/py"
    assert listing["path"].startswith(str(root / ".staging"))
    assert os.path.isfile(os.path.join(listing["path"], "proj", "scripts", "shoot.py"))
    proto = listing["proto"]
    proto.transport.loseConnection = lambda: None
    assert proto.transport.closed_stdin
    proto.outReceived(b"alpha\nbeta\n")
    proto.processExited(Failure(ProcessDone(0)))
    proto.processEnded(Failure(ProcessDone(0)))
    [project] = outcome
    assert (project.name, project.version) == ("proj", 1)
    assert (project.spiders, project.scripts) == (("alpha", "beta"), ("shoot",))
    assert projects.script_path("proj", "shoot") == str(
        root / "proj" / "1" / "proj" / "scripts" / "shoot.py")
    assert reactor.getDelayedCalls() == [], "the list timeout and drain timers are gone"
