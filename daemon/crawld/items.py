"""Spider jobs' items files: ``<data>/items/<id>.jl``, one JSON object per line.

The job writes them (Scrapy's feed export, set up in its own process by
runner/crawl.py) unless its project configures feeds itself; the daemon creates each
file empty before the job starts (so that it is the job's user's under ``run-as``, in
a folder the job cannot write to), pages through it for job-items.json (in a
thread), serves it on the scrapyd listener's ``/items/...`` and removes it with the
job (retention).
"""
from __future__ import annotations

import os
import stat
from typing import IO, Optional


EXT = "jl"


def name(job_id: str) -> str:
    """``<job_id>.jl``: the file's name in the items folder."""
    return f"{job_id}.{EXT}"


def path(items_dir: str, job_id: str) -> str:
    """Where the job's items file is."""
    return os.path.join(items_dir, name(job_id))


def create(items_dir: str, job_id: str, uid: Optional[int] = None,
           gid: Optional[int] = None) -> str:
    """Create the job's items file, empty (owned by ``uid``/``gid`` under run-as);
    returns its path."""
    target = path(items_dir, job_id)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
                 | os.O_CLOEXEC, 0o640)
    try:
        if uid is not None:
            os.fchown(fd, uid, gid if gid is not None else -1)
    finally:
        os.close(fd)
    return target


def remove(items_dir: str, job_id: str) -> None:
    """Delete the job's items file, if there is one (blocking: retention's thread)."""
    try:
        os.unlink(path(items_dir, job_id))
    except FileNotFoundError:
        pass


def open_file(items_dir: str, job_id: str) -> IO[bytes]:
    """The job's items file opened for reading (blocking: run it in a thread); only a
    regular file, never through a link. FileNotFoundError when there is none.

    The folder is the daemon's (a job cannot put a link in it), the file is the job's:
    it may have made it a FIFO, on which a plain open would never return."""
    fd = os.open(path(items_dir, job_id), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK
                 | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise FileNotFoundError(path(items_dir, job_id))
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def present(items_dir: str) -> set[str]:
    """The ids of the jobs that have an items file (blocking: one listing)."""
    suffix = "." + EXT
    try:
        return {n[:-len(suffix)] for n in os.listdir(items_dir) if n.endswith(suffix)}
    except FileNotFoundError:
        return set()


def write_at(items_dir: str, job_id: str, offset: int, data: bytes) -> None:
    """Write items that came home from a worker at their offset in the job's file
    (created if needed; never through a link). A chunk sent twice lands on itself."""
    fd = os.open(path(items_dir, job_id), os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW
                 | os.O_CLOEXEC, 0o640)
    try:
        os.pwrite(fd, data, offset)
    finally:
        os.close(fd)


def size(items_dir: str, job_id: str) -> int:
    """Bytes in the job's items file (0 when there is none)."""
    try:
        return os.stat(path(items_dir, job_id)).st_size
    except FileNotFoundError:
        return 0
