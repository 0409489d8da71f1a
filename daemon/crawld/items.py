"""Spider jobs' items files: ``<data>/items/<id>.jl``, one JSON object per line.

The job writes them (Scrapy's feed export, set up in its own process by
runner/crawl.py) unless its project configures feeds itself; the daemon creates each
file empty before the job starts (so that it is the job's user's under ``run-as``, in
a folder the job cannot write to), pages through it for job-items.json (in a thread)
and removes it with the job (retention).
"""
from __future__ import annotations

import os
from typing import Optional


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
