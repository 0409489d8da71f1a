"""What a worker remembers of its attempts across its own restarts: one small JSON file
per attempt, ``<data-dir>/attempts/<job id>.json`` (key, pid, pid start time).

Written before the attempt starts (no pid yet) and again once it runs, removed once the
daemon accepted its end (or refused it). A worker that finds records at start had died
with those attempts in flight: it kills what still runs of them (by pid and start time,
else by the job's title or environment), ships what it holds of their output and reports
them ended "the worker restarted" (runtime.WorkerRuntime.sweep). Writes go through a
temporary file and a rename, so a record is whole or absent. Blocking: call in a thread.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from typing import Optional

from .. import tree
from ..model import JOB_ID_RE


@dataclass(frozen=True)
class AttemptRecord:
    """One attempt a worker runs: its key (``<job id>/<number>``) and process."""

    key: str
    pid: Optional[int] = None
    pid_started: Optional[float] = None

    @property
    def job_id(self) -> str:
        return self.key.rsplit("/", 1)[0]


def path(folder: str, job_id: str) -> str:
    """``<folder>/<job id>.json``."""
    return os.path.join(folder, f"{job_id}.json")


def write(folder: str, record: AttemptRecord) -> None:
    """Record ``record`` (replacing the job's previous record)."""
    os.makedirs(folder, mode=0o700, exist_ok=True)
    target = path(folder, record.job_id)
    tmp = target + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(asdict(record), fh)
    os.replace(tmp, target)


def remove(folder: str, job_id: str) -> None:
    """Forget the job's attempt."""
    try:
        os.unlink(path(folder, job_id))
    except FileNotFoundError:
        pass


def load_all(folder: str) -> list[AttemptRecord]:
    """Every readable record in ``folder`` (unreadable ones are removed: a record is
    only written whole, so a broken one is not ours)."""
    found = []
    try:
        names = sorted(os.listdir(folder))
    except FileNotFoundError:
        return []
    for name in names:
        full = os.path.join(folder, name)
        if not name.endswith(".json"):
            if name.endswith(".tmp"):
                os.unlink(full)
            continue
        try:
            with open(full) as fh:
                data = json.load(fh)
            record = AttemptRecord(str(data["key"]), data.get("pid"), data.get("pid_started"))
            if not JOB_ID_RE.fullmatch(record.job_id) or name != f"{record.job_id}.json":
                raise ValueError(f"record {name} names {record.key}")
        except (OSError, ValueError, KeyError, TypeError):
            os.unlink(full)
            continue
        found.append(record)
    return found


def kill(record: AttemptRecord) -> int:
    """Kill whatever still runs of the recorded attempt: its tree when the recorded pid
    is still that process, then anything titled or marked as the job's. Returns how
    many processes were found alive."""
    killed = 0
    if record.pid is not None and tree.is_same_process(record.pid, record.pid_started):
        tree.kill_tree(record.pid)
        killed += 1
    return killed + tree.kill_found(tree.find_job(record.job_id))
