"""A browser job's runner: one headless Chromium driven by Playwright, for one script.

Forked by the shim (shim.py) before anything of Playwright is imported; needs only the
standard library and Playwright (crawld need not be installed). Everything it is told
comes from the environment:

    CRAWLD_JOB_ID       the job id (``job.id``)
    CRAWLD_SCRIPT       a .py file defining ``async def run(page, job)``; empty or unset
                        for the built-in browse job, described by
    CRAWLD_BROWSE       {"url": ...} or {"html": ...}, optional "wait_for" (a CSS
                        selector), "screenshot" (bool), "timeout" (seconds, default 30)
    CRAWLD_ARGUMENT     JSON, default {} (``job.argument``)
    CRAWLD_FILES_DIR    where ``job.save`` puts artifacts (created; default ./files)
    CRAWLD_TMP          the job's temporary directory: TMPDIR for the runner, Playwright
                        and Chromium, and the browser profile (``profile``). Removed at
                        the end (by the shim). Default: a fresh directory under the
                        system's tmp.
    CRAWLD_BROWSER      the Chromium executable (default /usr/lib/chromium/chromium)
    CRAWLD_KILL_GRACE   seconds a stopped runner gets before everything is SIGKILLed (5)
    CRAWLD_CONTROL_OUT  fd the runner writes events to, JSON lines (optional; job.py)
    CRAWLD_CONTROL_IN   fd the runner reads commands from, JSON lines (optional)

A failure the runner can explain better than a traceback (browsing failed, the browser
did not start) is written to stderr and sent as an ``error`` event before the runner
exits 1: the daemon makes it the job's reason.
"""
from __future__ import annotations

import asyncio
import importlib.util
import inspect
import json
import os
import signal
import sys
import tempfile
import traceback
from typing import Any, Awaitable, Callable, Optional

from .job import ControlOut, Job, Session
from .proc import note

DEFAULT_BROWSER = "/usr/lib/chromium/chromium"
BROWSER_FLAGS = ["--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
CLOSE_TIMEOUT = 5.0      # seconds the runner waits for the browser/driver to close
MAX_REASON = 1000        # characters of a failure's reason sent to the daemon
ALIAS_ENV = "CRAWLD_BROWSER_TMPDIR"  # shim -> runner: Chromium's short TMPDIR, if any

EXIT_OK, EXIT_FAILED, EXIT_UNUSABLE = 0, 1, 2


def env_fd(name: str) -> Optional[int]:
    """The fd number in environment variable ``name``, or None when unset or empty."""
    value = os.environ.get(name, "").strip()
    return int(value) if value else None


class Unusable(Exception):
    """The job cannot be started as given (exit 2); the message says why."""


class Failed(Exception):
    """The job failed in a way a message explains better than a traceback (exit 1).

    ``reason`` is one line, the job's reason at the daemon; ``detail`` (default: the
    reason) is what the .err log gets, e.g. Playwright's whole call log.
    """

    def __init__(self, reason: str, detail: Optional[str] = None) -> None:
        super().__init__(reason)
        self.reason = reason[:MAX_REASON]
        self.detail = detail or reason


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (Playwright's add a call log below)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def load_script(path: str) -> Callable[..., Awaitable[Any]]:
    """Import the user's script from its path and return its async ``run``.

    The script's directory goes first on sys.path so it can import its siblings, then
    the working directory (the project's top, where crawld starts the job) so it can
    import the project's packages. (The bootstrap puts no directory of crawld's on
    sys.path: crawld's modules are no script's business.)
    """
    if not os.path.isfile(path):
        raise Unusable(f"script not found: {path}")
    script_dir = os.path.dirname(os.path.abspath(path))
    sys.path.insert(0, script_dir)
    if os.getcwd() not in sys.path:
        sys.path.insert(1, os.getcwd())
    spec = importlib.util.spec_from_file_location("crawld_browser_script", path)
    if spec is None or spec.loader is None:
        raise Unusable(f"cannot load {path} as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        traceback.print_exc()
        raise Unusable(f"importing {path} failed: {type(exc).__name__}: {exc}") from None
    run = getattr(module, "run", None)
    if run is None:
        raise Unusable(f"{path} defines no run(); it must define async def run(page, job)")
    if not inspect.iscoroutinefunction(run):
        raise Unusable(f"{path}: run must be a coroutine function: "
                       "async def run(page, job)")
    return run


def control_fd(name: str) -> Optional[int]:
    """The open fd named by environment variable ``name`` (None: unset or empty)."""
    try:
        fd = env_fd(name)
        if fd is not None:
            os.fstat(fd)
        return fd
    except ValueError:
        raise Unusable(f"{name} is not an fd number: {os.environ.get(name)!r}") from None
    except OSError as exc:
        raise Unusable(f"{name}: fd {os.environ.get(name)} is not open: {exc}") from None


def parse_json_env(name: str, default: str) -> Any:
    """The JSON value of environment variable ``name`` (Unusable if it is not JSON)."""
    text = os.environ.get(name) or default
    try:
        return json.loads(text)
    except ValueError as exc:
        raise Unusable(f"{name} is not valid JSON: {exc}") from None


def browse_entry(spec: Any) -> Callable[[Any, Job], Awaitable[None]]:
    """The built-in browse job for a validated CRAWLD_BROWSE ``spec``."""
    if not isinstance(spec, dict) or (("url" in spec) == ("html" in spec)):
        raise Unusable('CRAWLD_BROWSE needs exactly one of "url" or "html"')
    source = spec.get("url", spec.get("html"))
    if not isinstance(source, str):
        raise Unusable('CRAWLD_BROWSE "url"/"html" must be a string')
    wait_for = spec.get("wait_for")
    if wait_for is not None and not isinstance(wait_for, str):
        raise Unusable('CRAWLD_BROWSE "wait_for" must be a CSS selector string')
    try:
        timeout = float(spec.get("timeout", 30))
    except (TypeError, ValueError):
        raise Unusable('CRAWLD_BROWSE "timeout" must be a number of seconds') from None
    timeout_ms = timeout * 1000

    async def browse(page: Any, job: Job) -> None:
        from playwright.async_api import Error as PlaywrightError
        from playwright.async_api import TimeoutError as PlaywrightTimeout
        status = None
        try:
            if "url" in spec:
                response = await page.goto(source, timeout=timeout_ms)
                status = response.status if response is not None else None
            else:
                await page.set_content(source, timeout=timeout_ms)
            if wait_for:
                await page.wait_for_selector(wait_for, timeout=timeout_ms)
            if spec.get("screenshot"):
                job.save("screenshot.png",
                         await page.screenshot(full_page=True, timeout=timeout_ms))
            title = await page.title()
        except PlaywrightTimeout as exc:  # "Page.wait_for_selector: Timeout 3000ms exceeded."
            raise Failed(f"timed out after {timeout:g} s (timeout): {first_line(exc)}",
                         f"browse failed: {exc}") from None
        except PlaywrightError as exc:    # "Page.goto: net::ERR_NAME_NOT_RESOLVED at ..."
            raise Failed(f"browse failed: {first_line(exc)}", f"browse failed: {exc}") from None
        job.result({"url": page.url, "title": title, "status": status})

    return browse


async def drive(entry: Callable[[Any, Job], Awaitable[Any]], job: Job, out: ControlOut,
                in_fd: Optional[int]) -> int:
    """Launch Chromium, serve the control channel, run ``entry(page, job)``, close."""
    from playwright.async_api import async_playwright

    tmp = os.environ["CRAWLD_TMP"]
    args = list(BROWSER_FLAGS) + (["--no-sandbox"] if os.geteuid() == 0 else [])
    browser_env = dict(os.environ)
    alias = browser_env.pop(ALIAS_ENV, None)
    if alias:
        browser_env.update(TMPDIR=alias, TEMP=alias, TMP=alias)
    playwright = await async_playwright().start()
    context = session = None
    try:
        try:
            context = await playwright.chromium.launch_persistent_context(
                user_data_dir=os.path.join(tmp, "profile"),
                executable_path=os.environ.get("CRAWLD_BROWSER") or DEFAULT_BROWSER,
                headless=True, args=args, env=browser_env)
        except Exception as exc:
            raise Failed(f"cannot start the browser: {first_line(exc)}",
                         f"cannot start the browser: {exc}") from None
        context.on("console", lambda msg: console_message(msg, job))
        context.on("page", watch_page_errors)
        for existing in context.pages:
            watch_page_errors(existing)
        # window.postData(x) logs x as JSON behind a marker, which console_message turns
        # into job.post(x). (Playwright's expose_function would do the same through a
        # binding, but the first one costs ~20 ms per job; an init script costs ~1 ms.)
        await context.add_init_script(POST_DATA_JS)
        for existing in context.pages:
            await existing.evaluate(POST_DATA_JS)
        page = context.pages[0] if context.pages else await context.new_page()
        session = Session(job, out, page)
        await session.start(in_fd)
        out.send({"type": "ready"})
        try:
            value = await entry(page, job)
        except SystemExit as exc:
            return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if value is not None and not job.result_sent:
            job.result(value)
        return EXIT_OK
    finally:
        if session is not None:
            session.stop()
        for step in ((context.close() if context is not None else None), playwright.stop()):
            if step is None:
                continue
            try:
                await asyncio.wait_for(step, CLOSE_TIMEOUT)
            except Exception as exc:  # a wedged browser: the shim kills what is left
                note(f"closing the browser: {type(exc).__name__}: {exc}")


POST_MARK = "\u0000crawld-post\u0000"
# An IIFE, so that its value is undefined: page.evaluate() calls a function value.
POST_DATA_JS = ("(() => { window.postData = (data) => { console.debug(%s + JSON.stringify("
                "data === undefined ? null : data)); }; })()" % json.dumps(POST_MARK))


def console_message(msg: Any, job: "Job") -> None:
    """A page's console message: a window.postData call (posted), or output (printed)."""
    text = msg.text
    if msg.type == "debug" and text.startswith(POST_MARK):
        try:
            job.post(json.loads(text[len(POST_MARK):]))
        except ValueError:
            note("window.postData sent something that is not JSON")
        return
    print(f"[console.{msg.type}] {text}", flush=True)


def watch_page_errors(page: Any) -> None:
    """Print the page's uncaught errors to stderr."""
    page.on("pageerror", lambda error: print(
        f"[pageerror] {error.stack or error.message}", file=sys.stderr, flush=True))


async def runner_async() -> int:
    """Set up the job from the environment and run it; returns the exit status.

    SIGTERM/SIGINT cancel the job (the script sees CancelledError and may clean up);
    the status is then 128 + the signal. A second one exits at once.
    """
    try:
        out_fd = control_fd("CRAWLD_CONTROL_OUT")
        in_fd = control_fd("CRAWLD_CONTROL_IN")
    except Unusable as exc:
        note(str(exc))
        return EXIT_UNUSABLE
    out = ControlOut(out_fd)
    try:
        try:
            script = os.environ.get("CRAWLD_SCRIPT", "")
            if script:
                entry = load_script(script)
            else:
                entry = browse_entry(parse_json_env("CRAWLD_BROWSE", "null"))
            argument = parse_json_env("CRAWLD_ARGUMENT", "{}")
            files_dir = os.path.abspath(os.environ.get("CRAWLD_FILES_DIR") or "files")
            os.makedirs(files_dir, exist_ok=True)
            try:
                import playwright.async_api  # noqa: F401
            except ImportError as exc:
                raise Unusable(f"Playwright is not installed for {sys.executable}: {exc}")
        except Unusable as exc:
            note(str(exc))
            return EXIT_UNUSABLE
        job = Job(os.environ.get("CRAWLD_JOB_ID", ""), argument, files_dir, out)

        main_task = asyncio.current_task()
        stopping = []

        def on_stop(sig: int) -> None:
            if stopping:
                os._exit(128 + sig)
            stopping.append(sig)
            note(f"signal {sig}: cancelling the job")
            main_task.cancel()

        loop = asyncio.get_running_loop()
        for sig in STOP_SIGNALS:
            loop.add_signal_handler(sig, on_stop, sig)
        try:
            return await drive(entry, job, out, in_fd)
        except asyncio.CancelledError:
            return 128 + (stopping[0] if stopping else signal.SIGTERM)
        except Failed as exc:
            note(exc.detail)
            out.send({"type": "error", "message": exc.reason})
            return EXIT_FAILED
        except Exception:
            traceback.print_exc()
            return EXIT_FAILED
    finally:
        out.close()


def runner_main() -> int:
    """The forked runner: private temp dir, then the job on a fresh event loop.

    stdout becomes line-buffered so the log shows prints as they happen (and keeps them
    if the runner is killed). The loop is not torn down gracefully: once the job has
    returned its status, tasks a script left behind are abandoned rather than awaited
    (os._exit follows).
    """
    sys.stdout.reconfigure(line_buffering=True)
    tmp = os.environ["CRAWLD_TMP"]
    os.makedirs(tmp, exist_ok=True)
    for name in ("TMPDIR", "TEMP", "TMP"):
        os.environ[name] = tmp
    tempfile.tempdir = None
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    return loop.run_until_complete(runner_async())
