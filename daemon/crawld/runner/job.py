"""What a browser script's ``run(page, job)`` gets: the ``job`` object, the control
channel it reports through, and the session serving the daemon's commands (stdlib only).

Control protocol: one JSON object per line, UTF-8. Runner -> daemon (CRAWLD_CONTROL_OUT):
    {"type": "ready"}                                   the page exists; run() is next
    {"type": "post", "data": X}                         job.post(X), window.postData(X)
    {"type": "progress", "value": float|null, "label": str|null}
    {"type": "result", "data": X}
    {"type": "file", "name": str, "size": int}          after job.save
    {"type": "screenshot", "req": N, "ok": true}
    {"type": "screenshot", "req": N, "ok": false, "error": str}
    {"type": "error", "message": str}                   why the job is about to fail
                                                        (browsing failed, no browser):
                                                        the daemon makes it the reason
Daemon -> runner (CRAWLD_CONTROL_IN):
    {"type": "message", "data": X}      to job.messages() and to window.ondata(X)
    {"type": "screenshot", "req": N, "path": "/abs/file.png", "full_page": bool}
Commands are served by their own asyncio reader, so they work while the script awaits
anything (not while it blocks the event loop with synchronous code).
"""
from __future__ import annotations

import asyncio
import json
import os
import tempfile
import threading
from typing import Any, AsyncIterator, Awaitable, Callable, Optional, Union

from .proc import note

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
