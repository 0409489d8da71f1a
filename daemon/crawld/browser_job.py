"""A browser job: one headless Chromium driven by Playwright, for one user script.

The daemon runs this file with the jobs' interpreter, as ``python browser_job.py``; it
needs only the standard library and Playwright (crawld need not be installed there).
Everything it is told comes from the environment:

    CRAWLD_JOB_ID       the job id (``job.id``)
    CRAWLD_SCRIPT       a .py file defining ``async def run(page, job)``; empty or unset
                        for the built-in browse job, described by
    CRAWLD_BROWSE       {"url": ...} or {"html": ...}, optional "wait_for" (a CSS
                        selector), "screenshot" (bool), "timeout" (seconds, default 30)
    CRAWLD_ARGUMENT     JSON, default {} (``job.argument``)
    CRAWLD_FILES_DIR    where ``job.save`` puts artifacts (created; default ./files)
    CRAWLD_TMP          the job's temporary directory: TMPDIR for the runner, Playwright
                        and Chromium, and the browser profile (``profile``). Removed at
                        the end. Default: a fresh directory under the system's tmp.
    CRAWLD_BROWSER      the Chromium executable (default /usr/lib/chromium/chromium)
    CRAWLD_KILL_GRACE   seconds a stopped runner gets before everything is SIGKILLed (5)
    CRAWLD_CONTROL_OUT  fd the runner writes events to, JSON lines (optional)
    CRAWLD_CONTROL_IN   fd the runner reads commands from, JSON lines (optional)

Chromium puts its singleton socket in $TMPDIR/org.chromium.Chromium.XXXXXX/, and a Unix
socket path is limited to 107 bytes: with a long CRAWLD_TMP, Chromium aborts ("Socket
path too long"). The shim then makes a short symlink to CRAWLD_TMP in /tmp, named
/tmp/crawld-<first 10 hex digits of sha256(CRAWLD_TMP)>, and Chromium alone gets that as
its TMPDIR; the files stay in CRAWLD_TMP. The shim removes it at the end; should a shim
be SIGKILLed, the next one removes such links left dangling.

Process shape. Playwright's driver starts Chromium in a session of its own, so killing
the job's process group does not reach a wedged browser. The process therefore makes
itself a session leader and a child subreaper, then forks before Playwright is imported:

    shim (this pid; subreaper)        waits; on SIGTERM/SIGINT stops the runner, then
     `- runner                        SIGKILLs every descendant, reaps them, removes
         `- node (Playwright driver)  CRAWLD_TMP. Orphans re-parent to the shim, so
             `- chromium ...          "descendant" is always the ppid chain from here.

Exit status of the shim (what the daemon sees):
    0        the script returned (the browse job succeeded)
    1        the script raised, the browser failed to start, or browsing failed
    2        the job could not be started as given: unreadable script, no async
             ``run``, an exception while importing the script, bad CRAWLD_* JSON, or
             Playwright missing
    n        the script called ``sys.exit(n)``
    128+s    the runner died of signal s, or the shim was stopped by signal s (SIGTERM:
             143, SIGINT: 130) before the runner had finished; the runner itself exits
             143 when it honours a stop request
A stop signal that arrives after the runner has ended does not change the status.

Control protocol: one JSON object per line, UTF-8. Runner -> daemon:
    {"type": "ready"}                                   the page exists; run() is next
    {"type": "post", "data": X}                         job.post(X), window.postData(X)
    {"type": "progress", "value": float|null, "label": str|null}
    {"type": "result", "data": X}
    {"type": "file", "name": str, "size": int}          after job.save
    {"type": "screenshot", "req": N, "ok": true}
    {"type": "screenshot", "req": N, "ok": false, "error": str}
Daemon -> runner:
    {"type": "message", "data": X}      to job.messages() and to window.ondata(X)
    {"type": "screenshot", "req": N, "path": "/abs/file.png", "full_page": bool}
Commands are served by their own asyncio reader, so they work while the script awaits
anything (not while it blocks the event loop with synchronous code).
"""
from __future__ import annotations

import asyncio
import ctypes
import hashlib
import importlib.util
import inspect
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
from typing import Any, AsyncIterator, Awaitable, Callable, Optional, Union

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
DEFAULT_BROWSER = "/usr/lib/chromium/chromium"
BROWSER_FLAGS = ["--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
LEFTOVER_GRACE = 2.0     # seconds leftovers get after SIGTERM once the runner has ended
KILL_GIVE_UP = 30.0      # the shim stops trying to SIGKILL (unkillable: D state) after this
CLOSE_TIMEOUT = 5.0      # seconds the runner waits for the browser/driver to close
MAX_BROWSER_TMPDIR = 60  # longer TMPDIRs get a short alias for Chromium (see above)
ALIAS_ENV = "CRAWLD_BROWSER_TMPDIR"  # shim -> runner: the alias, when there is one

EXIT_OK, EXIT_FAILED, EXIT_UNUSABLE = 0, 1, 2


def note(message: str) -> None:
    """A line for the job's stderr log, from the shim or the runner."""
    print(f"browser_job[{os.getpid()}]: {message}", file=sys.stderr, flush=True)


def prctl(option: int, value: int) -> bool:
    """Call prctl(2); False when it is unavailable or refused (not fatal here)."""
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0) == 0
    except Exception:
        return False


def env_fd(name: str) -> Optional[int]:
    """The fd number in environment variable ``name``, or None when unset or empty."""
    value = os.environ.get(name, "").strip()
    return int(value) if value else None


# ---------------------------------------------------------------------------------------
# The shim: outlives everything below it, kills it all, reaps it all.
# ---------------------------------------------------------------------------------------

def descendants(root: int) -> list[int]:
    """Pids of every process whose ppid chain leads to ``root`` (zombies included).

    Read from /proc/<pid>/stat, which names the parent; the shim is a subreaper, so a
    process whose parent died is re-parented to it and is still found here.
    """
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                data = fh.read()
            ppid = int(data[data.rindex(b")") + 2:].split()[1])  # after "pid (comm) state"
        except (OSError, ValueError, IndexError):
            continue  # it ended while we looked
        children.setdefault(ppid, []).append(int(entry))
    found: list[int] = []
    stack = [root]
    while stack:
        for child in children.get(stack.pop(), ()):
            found.append(child)
            stack.append(child)
    return found


def exit_code(status: int) -> int:
    """A raw wait status as a shell would report it: the code, or 128 + the signal."""
    code = os.waitstatus_to_exitcode(status)
    return code if code >= 0 else 128 - code


class Shim:
    """Waits for the runner; on a stop request or at the end, clears the whole tree.

    SIGCHLD, SIGTERM and SIGINT are blocked (since before the fork) and collected with
    sigtimedwait, so no signal is lost between checks and no handler runs at odd times.
    Every wait is bounded: the shim never hangs forever.
    """

    WATCHED = {signal.SIGCHLD, *STOP_SIGNALS}

    def __init__(self, runner: int, tmp: str, alias: Optional[str], grace: float) -> None:
        self.runner = runner
        self.tmp = tmp
        self.alias = alias
        self.grace = grace
        self.runner_status: Optional[int] = None

    def reap(self) -> None:
        """Collect every ended child, remembering the runner's status."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.runner:
                self.runner_status = status

    def wait(self, done: Callable[[], bool], timeout: Optional[float]) -> Optional[int]:
        """Reap until ``done()`` or ``timeout`` seconds (None: no limit) have passed.

        Returns the stop signal that interrupted the wait, if one did. Checks at least
        every 0.1 s: grandchildren ending send the shim no SIGCHLD.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            self.reap()
            if done():
                return None
            remaining = 0.1 if deadline is None else min(0.1, deadline - time.monotonic())
            if remaining <= 0:
                return None
            info = signal.sigtimedwait(self.WATCHED, remaining)
            if info is not None and info.si_signo in STOP_SIGNALS:
                return info.si_signo

    def signal_all(self, sig: int) -> int:
        """Send ``sig`` to every descendant; returns how many were there."""
        pids = descendants(os.getpid())
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        return len(pids)

    def kill_all(self) -> None:
        """SIGKILL descendants until none is left, reaping as they end.

        Repeated because a process may fork or be re-parented while we look; SIGKILL
        also ends SIGSTOPped processes. Gives up (with a note) only on processes that
        outlive KILL_GIVE_UP seconds of SIGKILLs, i.e. are stuck in the kernel.
        """
        deadline = time.monotonic() + KILL_GIVE_UP
        killed: set[int] = set()
        while True:
            self.reap()
            pids = descendants(os.getpid())
            if not pids:
                break
            if time.monotonic() > deadline:
                note(f"giving up on unkillable processes {sorted(pids)}")
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                    killed.add(pid)
                except ProcessLookupError:
                    pass
            signal.sigtimedwait({signal.SIGCHLD}, 0.02)
        if killed:
            note(f"killed {len(killed)} process(es): {sorted(killed)}")

    def remove_tmp(self) -> None:
        """Delete CRAWLD_TMP (profile, Playwright artifacts, Chromium's temp files)."""
        if self.alias:
            try:
                os.unlink(self.alias)
            except FileNotFoundError:
                pass
            except OSError as exc:
                note(f"cannot remove {self.alias}: {exc}")

        def complain(_function: Any, path: str, exc_info: Any) -> None:
            if not isinstance(exc_info[1], FileNotFoundError):
                note(f"cannot remove {path}: {exc_info[1]}")

        shutil.rmtree(self.tmp, onerror=complain)

    def run(self) -> int:
        """The shim's whole life; returns its exit status (see the module docstring)."""
        runner_done = lambda: self.runner_status is not None  # noqa: E731
        stop = self.wait(runner_done, None)
        if stop is None:
            code = exit_code(self.runner_status)
            leftovers = self.signal_all(signal.SIGTERM)
            if leftovers:
                note(f"the runner ended with status {code}; SIGTERM to {leftovers} "
                     "leftover process(es)")
                self.wait(lambda: not descendants(os.getpid()), LEFTOVER_GRACE)
        else:
            code = 128 + stop
            note(f"stopping on signal {stop}: SIGTERM to the runner, "
                 f"{self.grace:g} s of grace")
            try:
                os.kill(self.runner, signal.SIGTERM)
            except ProcessLookupError:
                pass
            if self.wait(runner_done, self.grace) is None and not runner_done():
                note(f"the runner did not end within {self.grace:g} s")
        self.kill_all()
        self.remove_tmp()
        return code


ALIAS_NAME = re.compile(r"crawld-[0-9a-f]{10}")


def sweep_aliases(base: str) -> None:
    """Remove our dangling alias links in ``base`` (left by shims that were killed)."""
    try:
        names = [n for n in os.listdir(base) if ALIAS_NAME.fullmatch(n)]
    except OSError:
        return
    for name in names:
        path = os.path.join(base, name)
        try:
            if (os.path.islink(path) and os.lstat(path).st_uid == os.geteuid()
                    and not os.path.exists(path)):
                os.unlink(path)
        except OSError:
            pass


def short_alias(tmp: str) -> Optional[str]:
    """A short symlink to ``tmp`` for Chromium's TMPDIR when ``tmp`` is too long.

    Its name derives from ``tmp`` (a daemon can find it); ``tmp`` must exist already,
    so that a link is dangling only once its job is over.
    """
    if len(os.fsencode(tmp)) <= MAX_BROWSER_TMPDIR:
        return None
    base = "/tmp" if os.access("/tmp", os.W_OK | os.X_OK) else tempfile.gettempdir()
    sweep_aliases(base)
    digest = hashlib.sha256(os.fsencode(tmp)).hexdigest()
    for attempt in range(100):
        suffix = digest[:10] if attempt == 0 else os.urandom(5).hex()
        alias = os.path.join(base, f"crawld-{suffix}")
        try:
            os.symlink(tmp, alias)
            return alias
        except FileExistsError:
            try:
                if os.readlink(alias) == tmp:
                    return alias
            except OSError:
                pass
        except OSError as exc:
            note(f"cannot make a short alias for {tmp}: {exc}")
            return None
    return None


def main() -> None:
    """Become a session leader and subreaper, fork the runner, and shim for it."""
    original_mask = signal.pthread_sigmask(signal.SIG_BLOCK, Shim.WATCHED)
    try:
        os.setsid()
    except OSError:
        pass  # already a session leader (the daemon used start_new_session)
    if not prctl(PR_SET_CHILD_SUBREAPER, 1):
        note("cannot become a child subreaper; orphans may escape the cleanup")
    tmp = os.environ.get("CRAWLD_TMP") or tempfile.mkdtemp(prefix="crawld-browser-")
    os.environ["CRAWLD_TMP"] = tmp = os.path.abspath(tmp)
    os.makedirs(tmp, mode=0o700, exist_ok=True)
    alias = short_alias(tmp)
    os.environ.pop(ALIAS_ENV, None)
    if alias:
        os.environ[ALIAS_ENV] = alias
    try:
        grace = max(0.0, float(os.environ.get("CRAWLD_KILL_GRACE") or 5))
    except ValueError:
        grace = 5.0
    shim_pid = os.getpid()
    sys.stdout.flush()
    sys.stderr.flush()
    runner = os.fork()
    if runner == 0:
        code = EXIT_FAILED
        try:
            signal.pthread_sigmask(signal.SIG_SETMASK, original_mask)
            prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # the shim SIGKILLed: follow it
            if os.getppid() != shim_pid:
                os._exit(EXIT_FAILED)
            code = runner_main()
        except BaseException:
            traceback.print_exc()
        finally:
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except Exception:
                    pass
            os._exit(code)
    for name in ("CRAWLD_CONTROL_OUT", "CRAWLD_CONTROL_IN"):
        try:
            fd = env_fd(name)
            if fd is not None:
                os.close(fd)
        except (OSError, ValueError):
            pass
    sys.exit(Shim(runner, tmp, alias, grace).run())


# ---------------------------------------------------------------------------------------
# The runner: Playwright, the control channel and the user's script.
# ---------------------------------------------------------------------------------------

class Unusable(Exception):
    """The job cannot be started as given (exit 2); the message says why."""


class Failed(Exception):
    """The job failed in a way a message explains better than a traceback (exit 1)."""


class ControlOut:
    """Writes events as whole JSON lines; a closed or missing channel drops them.

    Writes are blocking and serialised by a lock, so lines never interleave even if a
    script posts from a thread. EPIPE/EBADF (the daemon went away) are noted once and
    then ignored: the script keeps running.
    """

    def __init__(self, fd: Optional[int]) -> None:
        self._fd = fd
        self._lock = threading.Lock()
        if fd is not None:
            os.set_inheritable(fd, False)  # the driver and Chromium must not hold it
            os.set_blocking(fd, True)

    def send(self, event: dict) -> None:
        """Write one event; raises TypeError/ValueError if it is not JSON-serialisable."""
        line = (json.dumps(event, allow_nan=False, separators=(",", ":")) + "\n").encode()
        with self._lock:
            if self._fd is None:
                return
            view = memoryview(line)
            try:
                while view:
                    view = view[os.write(self._fd, view):]
            except OSError as exc:
                note(f"control channel closed ({exc.strerror}); events are dropped")
                self._close()

    def _close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass

    def close(self) -> None:
        """Close the channel (the daemon then sees EOF)."""
        with self._lock:
            self._close()


_CLOSED = object()  # ends job.messages() iterations


def check_file_name(name: Any) -> None:
    """Refuse anything but a plain, visible file name (ValueError)."""
    if (not isinstance(name, str) or not name or name.startswith(".") or "/" in name
            or "\0" in name or name == ".."):
        raise ValueError(f"not a plain file name: {name!r}")


class Job:
    """What a script's ``run(page, job)`` receives: its inputs and its ways to report."""

    def __init__(self, job_id: str, argument: Any, files_dir: str, out: ControlOut) -> None:
        self.id = job_id
        self.argument = argument
        self.files_dir = files_dir
        self._out = out
        self._inbox: asyncio.Queue = asyncio.Queue()
        self.result_sent = False

    def post(self, data: Any) -> None:
        """Send ``data`` (JSON-serialisable) to the daemon as a "post" event."""
        self._out.send({"type": "post", "data": data})

    def progress(self, value: Optional[float] = None, label: Optional[str] = None) -> None:
        """Report progress: a number (e.g. 0..1) and/or a short label."""
        self._out.send({"type": "progress",
                        "value": None if value is None else float(value),
                        "label": None if label is None else str(label)})

    def result(self, data: Any) -> None:
        """Report the job's result; a later call replaces it at the daemon."""
        self._out.send({"type": "result", "data": data})
        self.result_sent = True

    def save(self, name: str, data: Union[bytes, bytearray, memoryview, str]) -> str:
        """Write an artifact atomically into ``files_dir``; returns its path.

        ``name`` must be a plain file name (no '/', not empty, not starting with '.').
        A str is written as UTF-8. Readers never see a partial file: it is written to a
        hidden temporary name and renamed.
        """
        check_file_name(name)
        if isinstance(data, str):
            data = data.encode("utf-8")
        elif isinstance(data, (bytes, bytearray, memoryview)):
            data = bytes(data)
        else:
            raise TypeError(f"save() needs bytes or str, not {type(data).__name__}")
        path = os.path.join(self.files_dir, name)
        fd, partial = tempfile.mkstemp(dir=self.files_dir, prefix=f".{name}.",
                                       suffix=".part")
        try:
            # The rename makes it whole or absent for readers; no fsync: like the job's
            # logs, an artifact is not worth a disk flush per file (tens of ms each).
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.chmod(partial, 0o644)
            os.replace(partial, path)
        except BaseException:
            try:
                os.unlink(partial)
            except OSError:
                pass
            raise
        self._out.send({"type": "file", "name": name, "size": len(data)})
        return path

    async def messages(self) -> AsyncIterator[Any]:
        """Yield each message's data from the daemon; ends when the channel closes.

        Without a CRAWLD_CONTROL_IN channel it ends at once. Each message goes to one
        iterator only; messages that arrive before iteration starts are kept.
        """
        while True:
            item = await self._inbox.get()
            if item is _CLOSED:
                self._inbox.put_nowait(_CLOSED)  # end other iterations too
                return
            yield item

    def _deliver(self, data: Any) -> None:
        self._inbox.put_nowait(data)

    def _end_messages(self) -> None:
        self._inbox.put_nowait(_CLOSED)


class ControlIn(asyncio.Protocol):
    """Reads command lines from the daemon and hands each parsed object on."""

    def __init__(self, handle: Callable[[dict], None], on_eof: Callable[[], None]) -> None:
        self._handle = handle
        self._on_eof = on_eof
        self._buffer = b""

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            if not line.strip():
                continue
            try:
                command = json.loads(line)
            except ValueError:
                note(f"ignored a control line that is not JSON: {line[:200]!r}")
                continue
            if not isinstance(command, dict):
                note(f"ignored a control line that is not an object: {line[:200]!r}")
                continue
            self._handle(command)

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self._on_eof()


DELIVER_JS = """data => {
    if (typeof window.ondata !== 'function') return false;
    window.ondata(data);
    return true;
}"""


class Session:
    """A running browser job: the page, the job object, and the command handlers."""

    def __init__(self, job: Job, out: ControlOut, page: Any) -> None:
        self.job = job
        self.out = out
        self.page = page
        self._page_mail: asyncio.Queue = asyncio.Queue()
        self._tasks: set[asyncio.Task] = set()
        self._transport: Optional[asyncio.BaseTransport] = None

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def start(self, in_fd: Optional[int]) -> None:
        """Start serving commands (messages are handed to the page in order)."""
        self._spawn(self._mail_to_page())
        if in_fd is None:
            self.job._end_messages()
            return
        os.set_inheritable(in_fd, False)
        loop = asyncio.get_running_loop()
        pipe = os.fdopen(in_fd, "rb", buffering=0)
        try:
            self._transport, _ = await loop.connect_read_pipe(
                lambda: ControlIn(self._command, self.job._end_messages), pipe)
        except (OSError, ValueError) as exc:
            pipe.close()
            note(f"cannot read commands from fd {in_fd}: {exc}")
            self.job._end_messages()

    def stop(self) -> None:
        """Stop reading commands and cancel pending command work."""
        if self._transport is not None:
            self._transport.close()
        for task in list(self._tasks):
            task.cancel()

    def _command(self, command: dict) -> None:
        kind = command.get("type")
        if kind == "message":
            data = command.get("data")
            self.job._deliver(data)
            self._page_mail.put_nowait(data)
        elif kind == "screenshot":
            self._spawn(self._screenshot(command))
        else:
            note(f"ignored a control command of unknown type {kind!r}")

    async def _mail_to_page(self) -> None:
        """Call window.ondata(data) for each message, in arrival order."""
        while True:
            data = await self._page_mail.get()
            try:
                if not self.page.is_closed():
                    await self.page.evaluate(DELIVER_JS, data)
            except Exception as exc:
                note(f"window.ondata failed: {exc}")

    async def _screenshot(self, command: dict) -> None:
        req = command.get("req")
        path = command.get("path")
        try:
            if not isinstance(path, str) or not os.path.isabs(path):
                raise ValueError("path must be an absolute file path")
            await self.page.screenshot(path=path, full_page=bool(command.get("full_page")))
            reply = {"type": "screenshot", "req": req, "ok": True}
        except Exception as exc:
            reply = {"type": "screenshot", "req": req, "ok": False,
                     "error": f"{type(exc).__name__}: {exc}".strip()}
        self.out.send(reply)


def load_script(path: str) -> Callable[..., Awaitable[Any]]:
    """Import the user's script from its path and return its async ``run``.

    The script's directory goes first on sys.path so it can import its siblings, then
    the working directory (the project's top, where crawld starts the job) so it can
    import the project's packages; this file's own directory is removed from it:
    crawld's modules are no script's business.
    """
    if not os.path.isfile(path):
        raise Unusable(f"script not found: {path}")
    script_dir = os.path.dirname(os.path.abspath(path))
    own_file = globals().get("__file__")  # absent when run as ``python -c <source>``
    if own_file:
        own_dir = os.path.dirname(os.path.abspath(own_file))
        sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != own_dir]
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
        timeout_ms = float(spec.get("timeout", 30)) * 1000
    except (TypeError, ValueError):
        raise Unusable('CRAWLD_BROWSE "timeout" must be a number of seconds') from None

    async def browse(page: Any, job: Job) -> None:
        from playwright.async_api import Error as PlaywrightError
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
        except PlaywrightError as exc:
            raise Failed(f"browse failed: {exc}") from None
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
            raise Failed(f"cannot start the browser: {exc}") from None
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
            note(str(exc))
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


if __name__ == "__main__":
    main()
