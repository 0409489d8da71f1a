"""Browser jobs end to end: the runner's shim run as the daemon runs it, real Chromium.

Each test spawns ``python -c BOOTSTRAP <runner dir> shim`` with its environment, log files
and a control channel made of two pipes, exactly as the daemon does, and talks to it in
JSON lines. Pages come from a small HTTP server on 127.0.0.1. Chromium and Playwright
are required: a missing one fails the tests (CI installs both).
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import psutil
import pytest

from crawld import runner
from tests.conftest import wait_for
from tests.integration.pages import serve

SHIM = runner.argv(sys.executable, "shim")  # exactly the daemon's command line
CHROMIUM = os.environ.get("CRAWLD_TEST_CHROMIUM", "/usr/lib/chromium/chromium")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

PAGES = {
    "/hello": "<title>Hello</title><h1>hi</h1>",
    "/late": """<title>Late</title><body><script>
        setTimeout(() => { const d = document.createElement('div'); d.id = 'late';
                           d.textContent = 'here'; document.body.append(d); }, 300);
        </script></body>""",
    "/console": """<title>Console</title><script>
        console.log('from the page'); console.error('oops');
        setTimeout(() => { throw new Error('page boom'); }, 0);
        </script>""",
    "/chat": """<title>Chat</title><body><script>
        window.ondata = data => { document.body.dataset.got = JSON.stringify(data); };
        window.postData('hello');
        </script></body>""",
}


@pytest.fixture(scope="module", autouse=True)
def browser_available() -> None:
    """Fail (not skip) when the browser or Playwright is missing: CI must have them."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"Chromium not found at {CHROMIUM} (apt-get install chromium, or set "
                    "CRAWLD_TEST_CHROMIUM)")
    if importlib.util.find_spec("playwright") is None:
        pytest.fail(f"the playwright package is not installed for {sys.executable}")


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    """Base URL of the page server on a free loopback port."""
    with serve(PAGES) as url:
        yield url


class BrowserJob:
    """One browser job (its shim), its files, and our ends of its control pipes."""

    def __init__(self, tmp_path: Path, script: Optional[str] = None,
                 browse: Optional[dict] = None, argument: Any = None,
                 grace: float = 5, control: bool = True) -> None:
        self.dir = tmp_path
        self.files_dir = tmp_path / "files"
        self.tmp = tmp_path / "jobtmp"
        self.out_path = tmp_path / "job.out"
        self.err_path = tmp_path / "job.err"
        env = {**os.environ, "CRAWLD_JOB_ID": "job-1", "CRAWLD_TMP": str(self.tmp),
               "CRAWLD_FILES_DIR": str(self.files_dir), "CRAWLD_BROWSER": CHROMIUM,
               "CRAWLD_KILL_GRACE": str(grace), "CRAWLD_SCRIPT": "",
               "CRAWLD_ARGUMENT": json.dumps(argument if argument is not None else {})}
        env.pop("CRAWLD_CONTROL_OUT", None)
        env.pop("CRAWLD_CONTROL_IN", None)
        if script is not None:
            script_path = tmp_path / "script.py"
            script_path.write_text(textwrap.dedent(script))
            env["CRAWLD_SCRIPT"] = str(script_path)
        if browse is not None:
            env["CRAWLD_BROWSE"] = json.dumps(browse)
        self.events_fd: Optional[int] = None
        self.commands_fd: Optional[int] = None
        pass_fds: tuple[int, ...] = ()
        if control:
            self.events_fd, events_w = os.pipe()
            commands_r, self.commands_fd = os.pipe()
            env["CRAWLD_CONTROL_OUT"] = str(events_w)
            env["CRAWLD_CONTROL_IN"] = str(commands_r)
            pass_fds = (events_w, commands_r)
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(SHIM, env=env,
                                         stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                         pass_fds=pass_fds, cwd=str(tmp_path))
        for fd in pass_fds:
            os.close(fd)
        if self.events_fd is not None:
            os.set_blocking(self.events_fd, False)
        self.events: list[dict] = []
        self._partial = b""

    # -- the control channel ----------------------------------------------------------
    def read_events(self) -> list[dict]:
        """Take in whatever event lines have arrived; returns all events so far."""
        while self.events_fd is not None:
            try:
                chunk = os.read(self.events_fd, 65536)
            except BlockingIOError:
                break
            if not chunk:
                break
            self._partial += chunk
        *lines, self._partial = self._partial.split(b"\n")
        self.events.extend(json.loads(line) for line in lines)
        return self.events

    def event(self, kind: str, match: Callable[[dict], bool] = lambda e: True,
              timeout: float = 30) -> dict:
        """The first event of type ``kind`` satisfying ``match``, waiting for it."""
        def find() -> Optional[dict]:
            found = [e for e in self.read_events() if e["type"] == kind and match(e)]
            if not found and self.proc.poll() is not None:
                self.read_events()
                raise AssertionError(f"job exited {self.proc.returncode} before a {kind} "
                                     f"event; events {self.events}\n{self.stderr()}")
            return found[0] if found else None
        return wait_for(find, timeout, what=f"a {kind} event")

    def send(self, command: Any) -> None:
        self.send_raw(json.dumps(command).encode() + b"\n")

    def send_raw(self, data: bytes) -> None:
        assert self.commands_fd is not None
        os.write(self.commands_fd, data)

    # -- the process ------------------------------------------------------------------
    def wait(self, timeout: float = 30) -> int:
        """Wait for the exit status, then collect the remaining events."""
        code = self.proc.wait(timeout)
        self.read_events()
        return code

    def stdout(self) -> str:
        return self.out_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")

    def tree(self) -> list[psutil.Process]:
        """The shim's live descendants (everything the job started)."""
        try:
            return psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def close(self) -> None:
        """Kill whatever is left (a failed test must not leak browsers) and close fds."""
        if self.proc.poll() is None:
            for proc in [*self.tree(), psutil.Process(self.proc.pid)]:
                try:
                    proc.kill()
                except psutil.NoSuchProcess:
                    pass
            self.proc.wait(10)
        for fd in (self.events_fd, self.commands_fd):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., BrowserJob]]:
    """A factory for browser jobs; all of them are killed and closed at the end."""
    jobs: list[BrowserJob] = []

    def make(*args: Any, **kwargs: Any) -> BrowserJob:
        job = BrowserJob(tmp_path, *args, **kwargs)
        jobs.append(job)
        return job

    yield make
    for job in jobs:
        job.close()


def aliases(job: BrowserJob) -> list[str]:
    """Short symlinks to the job's CRAWLD_TMP in /tmp (made when its path is long)."""
    found = []
    for name in os.listdir("/tmp"):
        path = os.path.join("/tmp", name)
        if name.startswith("crawld-") and os.path.islink(path) \
                and os.readlink(path) == str(job.tmp):
            found.append(path)
    return found


def cleaned_up(job: BrowserJob) -> bool:
    """CRAWLD_TMP and its alias are gone."""
    return not job.tmp.exists() and not aliases(job)


def all_gone(procs: list[psutil.Process]) -> bool:
    """True when none of ``procs`` exists any more (not even as a zombie)."""
    return not any(p.is_running() for p in procs)


def is_chromium(proc: psutil.Process) -> bool:
    try:
        return "chromium" in proc.exe() or "chromium" in " ".join(proc.cmdline()[:1])
    except psutil.Error:
        return False


# ---------------------------------------------------------------------------------------

def test_a_script_reports_everything_and_leaves_nothing_behind(start, site):
    job = start("""
        import os, tempfile

        async def run(page, job):
            refused = []
            for name in ["", "../x", "a/b", ".hidden", ".."]:
                try:
                    job.save(name, b"x")
                except ValueError:
                    refused.append(name)
            tmp = tempfile.gettempdir()
            job.post({"argument": job.argument, "id": job.id, "tmp": tmp,
                      "profile": os.path.isdir(os.path.join(tmp, "profile")),
                      "refused": refused, "files_dir": job.files_dir})
            job.progress(0.5, "halfway")
            job.progress()
            await page.goto(job.argument["url"])
            path = job.save("page.html", await page.content())
            job.save("raw.bin", b"\\x00\\x01")
            return {"title": await page.title(), "path": path}
        """, argument={"url": site + "/hello", "n": [1, 2]})
    job.event("ready")
    started = job.tree()
    assert any(is_chromium(p) for p in started)
    # Chromium's singleton socket must fit a Unix socket path: long dirs get an alias.
    assert len(aliases(job)) == (1 if len(str(job.tmp)) > 60 else 0)
    if aliases(job):
        digest = hashlib.sha256(str(job.tmp).encode()).hexdigest()[:10]
        assert aliases(job) == [f"/tmp/crawld-{digest}"]
    assert job.wait() == 0, job.stderr()
    kinds = [e["type"] for e in job.events]
    assert kinds == ["ready", "post", "progress", "progress", "file", "file", "result"], job.events
    post = job.events[1]["data"]
    assert post == {"argument": {"url": site + "/hello", "n": [1, 2]}, "id": "job-1",
                    "tmp": str(job.tmp), "profile": True,
                    "refused": ["", "../x", "a/b", ".hidden", ".."],
                    "files_dir": str(job.files_dir)}
    assert job.events[2] == {"type": "progress", "value": 0.5, "label": "halfway"}
    assert job.events[3] == {"type": "progress", "value": None, "label": None}
    page_html = (job.files_dir / "page.html").read_bytes()
    assert job.events[4] == {"type": "file", "name": "page.html", "size": len(page_html)}
    assert b"<h1>hi</h1>" in page_html
    assert job.events[5] == {"type": "file", "name": "raw.bin", "size": 2}
    assert sorted(os.listdir(job.files_dir)) == ["page.html", "raw.bin"]
    assert job.events[6]["data"] == {"title": "Hello",
                                     "path": str(job.files_dir / "page.html")}
    assert cleaned_up(job)
    assert all_gone(started)


def test_messages_go_from_page_to_daemon_and_back(start, site):
    job = start("""
        import json

        async def run(page, job):
            await page.goto(job.argument["url"])
            await page.wait_for_function("document.body.dataset.got !== undefined")
            seen_by_page = json.loads(await page.evaluate("document.body.dataset.got"))
            async for message in job.messages():
                job.post({"page": seen_by_page, "job": message})
                break
            job.result("explicit")
            return "ignored: result() was called"
        """, argument={"url": site + "/chat"})
    assert job.event("post")["data"] == "hello"  # window.postData from the page
    job.send_raw(b"this is not json\n")
    job.send({"type": "message", "data": {"n": 1, "text": "h\u00e9"}})
    echoed = job.event("post", lambda e: isinstance(e["data"], dict))
    assert echoed["data"] == {"page": {"n": 1, "text": "h\u00e9"},
                              "job": {"n": 1, "text": "h\u00e9"}}
    assert job.wait() == 0, job.stderr()
    assert [e["data"] for e in job.events if e["type"] == "result"] == ["explicit"]
    assert "not JSON" in job.stderr()


def test_screenshots_on_request_while_the_script_awaits(start, site, tmp_path):
    job = start("""
        async def run(page, job):
            await page.goto(job.argument["url"])
            job.post("loaded")
            async for message in job.messages():
                return message
        """, argument={"url": site + "/late"})
    job.event("post", lambda e: e["data"] == "loaded")
    shot = tmp_path / "shot.png"
    job.send({"type": "screenshot", "req": 7, "path": str(shot), "full_page": True})
    job.send({"type": "screenshot", "req": 8, "path": "relative.png", "full_page": False})
    assert job.event("screenshot", lambda e: e["req"] == 7) == {
        "type": "screenshot", "req": 7, "ok": True}
    assert shot.read_bytes().startswith(PNG_MAGIC)
    refused = job.event("screenshot", lambda e: e["req"] == 8)
    assert refused["ok"] is False and "absolute" in refused["error"]
    job.send({"type": "message", "data": "bye"})
    assert job.wait() == 0, job.stderr()
    assert job.events[-1] == {"type": "result", "data": "bye"}


def test_console_output_goes_to_the_logs_even_without_a_control_channel(start, site):
    job = start("""
        async def run(page, job):
            await page.goto(job.argument["url"])
            await page.wait_for_timeout(100)  # let the page's late error be thrown
            job.post("nobody listens")
            async for message in job.messages():  # no channel: ends at once
                raise AssertionError(message)
            print("script done", flush=True)
        """, argument={"url": site + "/console"}, control=False)
    assert job.wait() == 0, job.stderr()
    out = job.stdout()
    assert "[console.log] from the page" in out and "[console.error] oops" in out
    assert "script done" in out
    assert "[pageerror]" in job.stderr() and "page boom" in job.stderr()


def test_a_daemon_that_stopped_listening_does_not_break_the_script(start, site):
    job = start("""
        async def run(page, job):
            for i in range(100):
                job.post("x" * 1000)
            print("posted all", flush=True)
            return "fine"
        """)
    os.close(job.events_fd)
    job.events_fd = None
    assert job.wait() == 0, job.stderr()
    assert "posted all" in job.stdout()
    assert "control channel closed" in job.stderr()


def test_a_script_that_raises_exits_1_with_its_traceback(start):
    job = start("""
        async def run(page, job):
            raise RuntimeError("script exploded")
        """)
    assert job.wait() == 1
    err = job.stderr()
    assert "Traceback" in err and "RuntimeError: script exploded" in err
    assert cleaned_up(job)


@pytest.mark.parametrize("script, complaint", [
    ("x = 1\n", "defines no run"),
    ("def run(page, job):\n    pass\n", "must be a coroutine function"),
    ("import no_such_module_for_crawld\n", "ModuleNotFoundError"),
])
def test_a_script_without_an_async_run_exits_2(start, script, complaint):
    job = start(script)
    assert job.wait() == 2
    assert complaint in job.stderr()
    assert job.read_events() == [] and cleaned_up(job)


def test_aliases_left_by_killed_jobs_are_swept(tmp_path):
    dangling = f"/tmp/crawld-{os.urandom(5).hex()}"
    os.symlink(str(tmp_path / "no-such-dir"), dangling)
    deep = tmp_path / ("d" * 50)  # long enough for CRAWLD_TMP to need an alias
    deep.mkdir()
    job = BrowserJob(deep, "x = 1\n")
    try:
        assert job.wait() == 2
    finally:
        job.close()
    assert not os.path.lexists(dangling)
    assert cleaned_up(job)


def test_browse_a_url_waiting_for_an_element_with_a_screenshot(start, site):
    job = start(browse={"url": site + "/late", "wait_for": "#late", "screenshot": True,
                        "timeout": 10})
    assert job.wait() == 0, job.stderr()
    shot = job.files_dir / "screenshot.png"
    assert [e["type"] for e in job.events] == ["ready", "file", "result"]
    assert job.events[1] == {"type": "file", "name": "screenshot.png",
                             "size": shot.stat().st_size}
    assert shot.read_bytes().startswith(PNG_MAGIC)
    assert job.events[2]["data"] == {"url": site + "/late", "title": "Late", "status": 200}


@contextlib.contextmanager
def closed_port() -> Iterator[int]:
    """A loopback port nobody listens on, reserved by a bound, unlistening socket."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def test_browse_html_and_a_failing_browse(start, site, tmp_path):
    job = start(browse={"html": "<title>Inline \u00e9</title><p>x</p>"})
    assert job.wait() == 0, job.stderr()
    assert job.events[-1]["data"] == {"url": "about:blank", "title": "Inline \u00e9",
                                      "status": None}
    assert not job.files_dir.exists() or os.listdir(job.files_dir) == []
    job.close()

    failing_dir = tmp_path / "failing"
    failing_dir.mkdir()
    with closed_port() as port:
        failing = BrowserJob(failing_dir, browse={"url": f"http://127.0.0.1:{port}/",
                                                  "timeout": 10})
        try:
            assert failing.wait() == 1
        finally:
            failing.close()
    assert "browse failed: Page.goto: net::ERR_CONNECTION_REFUSED" in failing.stderr()
    assert not [e for e in failing.events if e["type"] == "result"]
    [error] = [e for e in failing.events if e["type"] == "error"]
    assert error["message"].startswith("browse failed: Page.goto: net::ERR_CONNECTION_REFUSED")
    assert "\n" not in error["message"], "one line; the call log is in the .err log"


def test_a_selector_that_never_appears_fails_saying_it_timed_out(start, site):
    job = start(browse={"url": site + "/hello", "wait_for": "#never", "timeout": 1.5})
    assert job.wait() == 1, job.stderr()
    assert [e["type"] for e in job.events] == ["ready", "error"]
    assert job.events[-1]["message"] == ("timed out after 1.5 s (timeout): "
                                         "Page.wait_for_selector: Timeout 1500ms exceeded.")
    assert "Call log:" in job.stderr() and "#never" in job.stderr()


WAIT_FOREVER = """
    import asyncio

    async def run(page, job):
        await page.goto(job.argument["url"])
        job.post("loaded")
        try:
            await asyncio.Event().wait()
        finally:
            print("cleanup ran", flush=True)
    """


@pytest.mark.parametrize("frozen", ["chromium", "everything"])
def test_sigterm_kills_a_frozen_browser_for_good(start, site, frozen):
    job = start(WAIT_FOREVER, argument={"url": site + "/hello"}, grace=1)
    job.event("post", lambda e: e["data"] == "loaded")
    tree = job.tree()
    chromium = [p for p in tree if is_chromium(p)]
    assert len(chromium) >= 2, [p.cmdline()[:2] for p in tree]
    targets = chromium if frozen == "chromium" else tree
    for proc in targets:
        proc.suspend()  # SIGSTOP
    wait_for(lambda: all(p.status() == psutil.STATUS_STOPPED for p in targets), 10,
             what="the processes to stop")
    started = time.monotonic()
    job.proc.send_signal(signal.SIGTERM)
    assert job.wait(timeout=20) == 128 + signal.SIGTERM
    assert time.monotonic() - started < 15
    assert all_gone(tree), [p for p in tree if p.is_running()]
    assert cleaned_up(job)
    assert "killed" in job.stderr()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_lets_a_live_script_clean_up(start, site, sig):
    job = start(WAIT_FOREVER, argument={"url": site + "/hello"}, grace=20)
    job.event("post", lambda e: e["data"] == "loaded")
    tree = job.tree()
    job.proc.send_signal(sig)
    assert job.wait(timeout=15) == 128 + sig
    assert "cleanup ran" in job.stdout()
    assert "did not end within" not in job.stderr()
    assert all_gone(tree) and cleaned_up(job)


def test_processes_a_finished_script_leaves_behind_are_killed(start):
    job = start("""
        import subprocess, sys

        STUBBORN = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                    "print('stubborn', flush=True); time.sleep(1000)")

        async def run(page, job):
            proc = subprocess.Popen([sys.executable, "-c", STUBBORN],
                                    stdout=subprocess.PIPE, start_new_session=True)
            proc.stdout.readline()  # SIGTERM is ignored from now on
            job.post(proc.pid)
        """)
    stubborn = psutil.Process(job.event("post")["data"])
    assert job.wait() == 0, job.stderr()
    assert not stubborn.is_running()
    assert "leftover" in job.stderr() and "killed 1 process" in job.stderr()
    assert cleaned_up(job)
