"""crawld.runner: code for the jobs' interpreter. It imports nothing of crawld, starts from
its own source, and names its processes."""
from __future__ import annotations

import ast
import os
import subprocess
import sys
import types

import pytest

from crawld import runner
from crawld.runner import proc

OUTSIDE = {"scrapy", "playwright", "setproctitle"}  # what a runner may import, besides stdlib


def imports(tree: ast.AST) -> set[str]:
    """Top-level names of every absolute import in ``tree``."""
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module for n in ast.walk(tree)
              if isinstance(n, ast.ImportFrom) and n.level == 0 and n.module}
    return {name.split(".")[0] for name in names}


def test_runner_modules_and_the_bootstrap_import_only_stdlib_and_the_job_tools():
    files = [f for f in os.listdir(runner.DIR) if f.endswith(".py")]
    assert {"__init__.py", "zygote.py", "spider.py", "shim.py", "browser.py"} <= set(files)
    for name in files:
        with open(os.path.join(runner.DIR, name), encoding="utf-8") as fh:
            found = imports(ast.parse(fh.read()))
        assert found <= set(sys.stdlib_module_names) | OUTSIDE, (name, found)
    assert imports(ast.parse(runner.BOOTSTRAP)) <= {"importlib", "sys"}


def test_the_shim_and_runner_start_from_their_source_where_crawld_cannot_be_imported(
        tmp_path):
    """A browse job with a bad spec ends before Playwright starts: exit 2, the reason in
    stderr. ``crawld`` is made unimportable first, as in a venv without it."""
    python, _, code, *rest = runner.argv(sys.executable, "shim")
    env = {"PATH": os.environ.get("PATH", "/bin"), "CRAWLD_JOB_ID": "j-1",
           "CRAWLD_BROWSE": "{}", "CRAWLD_TMP": str(tmp_path / "tmp")}
    done = subprocess.run([python, "-c", "import sys; sys.modules['crawld'] = None\n" + code,
                           *rest], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2, done.stderr
    assert 'CRAWLD_BROWSE needs exactly one of "url" or "html"' in done.stderr
    assert not (tmp_path / "tmp").exists(), "the shim removed the job's temp dir"


@pytest.mark.parametrize("env, title", [
    ({"CRAWLD_JOB_ID": "6c3e", "CRAWLD_PROJECT": "books", "CRAWLD_SPIDER": "quotes"},
     "crawld: job 6c3e books/quotes"),
    ({"CRAWLD_JOB_ID": "6c3e", "CRAWLD_PROJECT": "", "CRAWLD_SPIDER": ""},
     "crawld: job 6c3e browse"),
    ({"CRAWLD_PROJECT": "books", "CRAWLD_SPIDER": "quotes"}, None),
    ({"CRAWLD_JOB_ID": ""}, None),
])
def test_job_titles(env, title):
    assert proc.job_title(env) == title
    assert title is None or title.startswith(proc.TITLE_PREFIX + "6c3e ")


def test_the_runner_title_has_a_suffix():
    env = {"CRAWLD_JOB_ID": "6c3e", "CRAWLD_PROJECT": "p", "CRAWLD_SPIDER": "s"}
    assert proc.job_title(env, " (runner)") == "crawld: job 6c3e p/s (runner)"


def test_set_title_keeps_the_environment_and_falls_back_to_the_short_name(monkeypatch):
    calls = []
    fake = types.ModuleType("setproctitle")
    fake.setproctitle = lambda title: calls.append(
        ("setproctitle", title, os.environ.get("SPT_NOENV")))
    monkeypatch.setitem(sys.modules, "setproctitle", fake)
    monkeypatch.setattr(proc, "prctl", lambda option, value: calls.append((option, value)))
    monkeypatch.delenv("SPT_NOENV", raising=False)
    proc.set_title("crawld: job 1 p/s")
    assert calls == [("setproctitle", "crawld: job 1 p/s", "1")], "environ left intact"
    assert "SPT_NOENV" not in os.environ, "not passed on to the job's children"
    monkeypatch.setitem(sys.modules, "setproctitle", None)  # not installed there
    proc.set_title("crawld: job 2 p/s")
    assert calls[1:] == [(proc.PR_SET_NAME, b"crawld: job 2 p")]
    proc.set_title(None)
    assert len(calls) == 2, "no title outside a job"
