"""Blocking reads of a job's files for the API, each run in a thread by its route.

A job's stdout from a byte offset (cut at a UTF-8 boundary), its events as
job-output.json shows them, its artifacts, and a file opened without following a link
the job may have planted (``open_regular``).
"""
from __future__ import annotations

import itertools
import json
import os
import stat
from typing import Any, Optional

from .. import browser, items as item_files
from .views import iso_ms

MAX_OUTPUT = 1024 * 1024   # bytes of stdout per job-output.json answer
MAX_MESSAGES = 1000        # events per job-output.json answer
MAX_SCREENSHOT = 64 * 1024 * 1024
CHUNK = 1024 * 1024        # bytes read at a time from an items file
MAX_ITEM = 16 * 1024 * 1024   # bytes of one item job-items.json returns (larger: null)
MAX_PAGE = 32 * 1024 * 1024   # bytes of items per job-items.json answer, about


def valid_file_name(name: str) -> bool:
    """What job.save accepts: a plain name, not hidden, no separator, no NUL."""
    return bool(name) and not name.startswith(".") and "/" not in name and "\0" not in name


def read_output(path: str, start: int, limit: int = MAX_OUTPUT) -> tuple[str, int]:
    """Up to ``limit`` bytes of a log from byte ``start``, cut at a UTF-8 boundary.

    Returns the text and the position to ask from next time (runs in a thread).
    """
    try:
        with open(path, "rb") as f:
            if start >= os.fstat(f.fileno()).st_size:
                return "", start  # nothing there yet (a seek that far may even fail)
            f.seek(start)
            data = f.read(limit)
    except FileNotFoundError:
        return "", start
    if data:  # more may follow (the job may be writing): do not split a character
        for back in range(1, min(4, len(data)) + 1):
            lead = data[-back]
            if lead & 0xC0 == 0xC0:  # a lead byte: is its sequence complete?
                need = 2 if lead & 0xE0 == 0xC0 else 3 if lead & 0xF0 == 0xE0 else 4
                if back < need:
                    data = data[:-back]
                break
            if lead & 0x80 == 0:
                break
    return data.decode("utf-8", "replace"), start + len(data)


def events_view(path: str, after: int, limit: int = MAX_MESSAGES) -> dict[str, Any]:
    """job-output.json's view of a job's events, built in a thread: the messages after
    ``after`` (at most ``limit``, dates as ISO 8601), the last progress and result."""
    events = browser.read_events(path, 0, 10 ** 12)
    progress, label = browser.last_progress(events)
    newer = (e for e in events if e.get("id", 0) > after)
    results = [e.get("data") for e in events if e.get("type") == "result"]
    return {"messages": [dict(e, date=iso_ms(e.get("date")))
                         for e in itertools.islice(newer, limit)],
            "progress": progress, "progress-label": label,
            "result": results[-1] if results else None}


def list_files(folder: str) -> list[dict[str, Any]]:
    """A job's artifacts: name, size and when it was written, sorted by name (runs in
    a thread)."""
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except FileNotFoundError:
        return []
    found = []
    for e in entries:
        if e.is_file(follow_symlinks=False) and not e.name.startswith("."):
            st = e.stat()
            found.append({"name": e.name, "size": st.st_size,
                          "modified": iso_ms(st.st_mtime)})
    return found


def open_regular(root: str, *parts: str) -> Any:
    """Open ``root/parts...`` for reading, but only a regular file reached without
    following a link (blocking: run it in a thread). Returns a binary file object.

    The job owns the folders below ``root`` (its files and temp dirs) and may put
    anything there: a symlink to the database (read as root under run-as), a FIFO (an
    open that never returns), /dev/zero. Each component is opened with O_NOFOLLOW from
    the one before, and the result must be a regular file; FileNotFoundError otherwise.
    """
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | (
                os.O_NONBLOCK if last else os.O_DIRECTORY)
            try:
                child = os.open(part, flags, dir_fd=fd)
            except OSError as exc:  # ELOOP (a link), ENOTDIR, ENXIO...
                raise FileNotFoundError(f"no regular file {part!r}") from exc
            os.close(fd)
            fd = child
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise FileNotFoundError("not a regular file")
        os.set_blocking(fd, True)
        handle = os.fdopen(fd, "rb")
        fd = -1
        return handle
    finally:
        if fd >= 0:
            os.close(fd)


def read_screenshot(root: str, *parts: str) -> bytes:
    """A screenshot the job wrote under its temp dir, read safely, then removed."""
    try:
        with open_regular(root, *parts) as f:
            data = f.read(MAX_SCREENSHOT + 1)
    finally:
        try:
            os.unlink(os.path.join(root, *parts))
        except OSError:
            pass
    if len(data) > MAX_SCREENSHOT:
        raise ValueError("screenshot over 64 MiB")
    return data


def _item(line: bytes) -> Any:
    try:
        return json.loads(line)
    except (ValueError, RecursionError):
        return None  # not a JSON line (a feed of the project's own format): null


def read_items(items_dir: str, job_id: str, offset: int, limit: int
               ) -> Optional[tuple[list[Any], int]]:
    """Items ``offset`` to ``offset + limit`` of a job's items file, and how many
    complete lines it holds; None when the job has no items file (runs in a thread).

    Read in CHUNK pieces, never whole: lines outside the page are only counted. A last
    line without its newline (the job is writing it) is not counted. An item over
    MAX_ITEM bytes is null (the .jl download has it); a page stops early past MAX_PAGE
    bytes of items, and the client asks again from ``offset + len(items)``."""
    try:
        fh = open_regular(items_dir, item_files.name(job_id))
    except FileNotFoundError:
        return None
    found: list[Any] = []
    total = page_bytes = 0
    pieces: list[bytes] = []   # the wanted line being read, while it is not too big
    size = 0                   # its bytes so far
    with fh:
        while chunk := fh.read(CHUNK):
            pos = 0
            while pos < len(chunk):
                if len(found) >= limit or page_bytes >= MAX_PAGE:  # the page is full
                    total += chunk.count(b"\n", pos)
                    break
                if total < offset:  # before the page: skip whole lines
                    skip = offset - total
                    if chunk.count(b"\n", pos) < skip:
                        total += chunk.count(b"\n", pos)
                        break
                    for _ in range(skip):
                        pos = chunk.index(b"\n", pos) + 1
                    total = offset
                    continue
                end = chunk.find(b"\n", pos)
                piece = chunk[pos:] if end < 0 else chunk[pos:end]
                size += len(piece)
                if size <= MAX_ITEM:
                    pieces.append(piece)
                if end < 0:
                    break
                found.append(_item(b"".join(pieces)) if size <= MAX_ITEM else None)
                page_bytes += size if size <= MAX_ITEM else 4  # "null"
                pieces, size = [], 0
                total += 1
                pos = end + 1
    return found, total
