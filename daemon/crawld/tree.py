"""Process trees: find a job's processes and descendants, signal all of them, recognise
a pid again, find what a job or a push's ``scrapy list`` left running.

A job's keeper (or a browser job's shim) leads its own session and process group, so
one ``killpg`` reaches most of it; descendants that started sessions of their own
(browsers do, and so does anything that daemonizes: the keeper, a subreaper, keeps them
in its tree) are found through the process table and signalled one by one. Processes
that outlived their keeper are found by title or environment (``find_job``,
``find_lists``): blocking /proc walks, run in a thread.
"""
from __future__ import annotations

import os
import signal as signals
from typing import Callable, Optional

import psutil

from .runner.proc import LIST_ENV, TITLE_PREFIX


def start_time(pid: int) -> Optional[float]:
    """When ``pid`` started, in clock ticks since boot (``/proc/<pid>/stat`` field 22).

    Ticks since boot, unlike a wall-clock start time, do not move when the clock is
    stepped, so a pid and its start ticks identify one process across daemon restarts.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    fields = data[data.rindex(b")") + 2:].split()  # after "pid (comm) "; fields[0] is #3
    return float(fields[19])


def is_same_process(pid: int, started: Optional[float]) -> bool:
    """True when ``pid`` is alive and is the process that started at ``started``."""
    now = start_time(pid)
    return now is not None and started is not None and now == started


def find_job(job_id: str) -> list[int]:
    """Pids of live processes of job ``job_id`` (blocking: a /proc walk; use a thread).

    A process belongs to the job when its title says so (its command line starts with
    ``crawld: job <id>``, runner/proc.py: every job process crawld starts, zygote-forked
    ones included) or its environment has ``CRAWLD_JOB_ID=<id>`` (what a job's
    processes exec, and a direct spawn, carry; a zygote-forked process keeps the
    zygote's). Environments of other users' processes are unreadable and skipped.
    """
    title = f"{TITLE_PREFIX}{job_id}".encode()
    needle = f"CRAWLD_JOB_ID={job_id}".encode()

    def titled(cmdline: bytes) -> bool:
        return cmdline.startswith(title) and cmdline[len(title):len(title) + 1] in (
            b"", b" ", b"\0")
    return _find(titled, lambda variable: variable == needle)


def find_lists(directory: str) -> list[int]:
    """Pids of live ``scrapy list`` processes crawld started in ``directory`` or below
    it, and of everything they started that kept their environment (blocking: a /proc
    walk). Each carries ``CRAWLD_LIST=<its staging directory>`` (commands.list_command),
    which ties it to one data directory, as a title could not."""
    exact = f"{LIST_ENV}={directory.rstrip('/')}".encode()
    below = exact + b"/"
    return _find(lambda cmdline: False,
                 lambda variable: variable == exact or variable.startswith(below))


def _find(titled: Callable[[bytes], bool], marked: Callable[[bytes], bool]) -> list[int]:
    """Pids whose command line is ``titled`` or one of whose environment variables
    (``NAME=value``) is ``marked``; never this process."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                if titled(fh.read()):
                    found.append(int(entry))
                    continue
            with open(f"/proc/{entry}/environ", "rb") as fh:
                if any(marked(variable) for variable in fh.read().split(b"\0")):
                    found.append(int(entry))
        except OSError:
            continue
    return sorted(found)


def kill_found(pids: list[int]) -> int:
    """SIGKILL each of ``pids`` with its group and descendants (blocking: psutil walks);
    returns how many of them were alive."""
    alive = 0
    for pid in pids:
        if start_time(pid) is not None:
            alive += 1
            kill_tree(pid)
    return alive


def descendants(pid: int) -> list[psutil.Process]:
    """Every live descendant of ``pid`` (children, grandchildren, ...)."""
    try:
        return psutil.Process(pid).children(recursive=True)
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return []


def signal_tree(pid: int, sig: int, known: Optional[list[psutil.Process]] = None,
                leader: bool = True) -> int:
    """Send ``sig`` to ``pid``, the process group it leads and every descendant, once.

    The group gets it first; the leader by pid only when it has no group of its own yet
    (it has not called setsid()), and each descendant by pid only when it has left the
    group: a second SIGTERM is not the same as one (Scrapy takes its second as "force an
    unclean shutdown", and dies before closing its spider). Pass ``leader=False`` once
    the leader has been reaped (its pid may be reused). ``known`` adds processes seen
    earlier (they may have been re-parented since). Returns how many processes were
    signalled individually.
    """
    procs = {p.pid: p for p in (known or [])}
    if leader:
        procs.update({p.pid: p for p in descendants(pid)})
    try:
        os.killpg(pid, sig)
        grouped = True
    except (ProcessLookupError, PermissionError):
        grouped = False
    if leader and not grouped:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
    count = 0
    for proc in procs.values():
        if grouped and _group_of(proc.pid) == pid:
            continue  # it had the signal through its group
        try:
            proc.send_signal(sig)  # psutil checks the pid was not reused
            count += 1
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return count


def _group_of(pid: int) -> Optional[int]:
    """The process group of ``pid``, None when it is gone."""
    try:
        return os.getpgid(pid)
    except (ProcessLookupError, PermissionError):
        return None


def kill_tree(pid: int, known: Optional[list[psutil.Process]] = None) -> int:
    """SIGKILL the group and every descendant."""
    return signal_tree(pid, signals.SIGKILL, known)


def tree_rss(pid: int, root: bool = True) -> int:
    """Resident memory of ``pid`` and all its descendants, in bytes (blocking: a thread).

    Summed per process, so pages shared between them (a zygote-forked job shares the
    preloaded Scrapy with the zygote) count once per process: an upper bound.
    ``root=False`` leaves ``pid`` itself out: a spider job's keeper only waits, and as a
    fork of the zygote it maps all of the zygote's memory, which is not the job's."""
    try:
        top = psutil.Process(pid)
        procs = ([top] if root else []) + top.children(recursive=True)
    except psutil.Error:
        return 0
    total = 0
    for proc in procs:
        try:
            total += proc.memory_info().rss
        except psutil.Error:
            continue
    return total
