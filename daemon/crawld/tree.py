"""Process trees: find a job's descendants, signal all of them, recognise a pid again.

A job leads its own session and process group, so one ``killpg`` reaches most of it;
descendants that started sessions of their own (browsers do) are found through the
process table and signalled one by one.
"""
from __future__ import annotations

import os
import signal as signals
from typing import Optional

import psutil


def start_time(pid: int) -> Optional[float]:
    """The kernel's start time of ``pid`` (to tell it from a later process with its pid)."""
    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return None


def is_same_process(pid: int, started: Optional[float]) -> bool:
    """True when ``pid`` is alive and is the process that started at ``started``."""
    now = start_time(pid)
    return now is not None and started is not None and abs(now - started) < 0.01


def descendants(pid: int) -> list[psutil.Process]:
    """Every live descendant of ``pid`` (children, grandchildren, ...)."""
    try:
        return psutil.Process(pid).children(recursive=True)
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return []


def signal_tree(pid: int, sig: int, known: Optional[list[psutil.Process]] = None) -> int:
    """Send ``sig`` to the process group led by ``pid`` and to every descendant.

    ``known`` adds processes seen earlier (they may have been re-parented since).
    Returns how many processes were signalled individually.
    """
    procs = {p.pid: p for p in (known or [])}
    procs.update({p.pid: p for p in descendants(pid)})
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
    count = 0
    for proc in procs.values():
        try:
            proc.send_signal(sig)  # psutil checks the pid was not reused
            count += 1
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return count


def kill_tree(pid: int, known: Optional[list[psutil.Process]] = None) -> int:
    """SIGKILL the group and every descendant."""
    return signal_tree(pid, signals.SIGKILL, known)
