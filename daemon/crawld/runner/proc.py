"""Process helpers shared by the zygote, the browser shim and the runners (stdlib only).

Process titles: every job process crawld starts calls itself ``crawld: job <id>
<project>/<spider or script>`` (a browse job: ``crawld: job <id> browse``) and the zygote
``crawld: zygote``, so that ``ps`` tells them apart and a restarted daemon finds a job's
processes by title even when their environment is not the job's (a zygote-forked
process keeps the zygote's ``/proc/PID/environ``). The daemon's ``tree.find_job``
matches the same prefix, ``TITLE_PREFIX``.
"""
from __future__ import annotations

import ctypes
import os
import sys
from typing import Callable, Mapping, NoReturn, Optional, Union

PR_SET_PDEATHSIG = 1
PR_SET_NAME = 15
PR_SET_CHILD_SUBREAPER = 36
TITLE_PREFIX = "crawld: job "


def note(message: str) -> None:
    """A line for the job's stderr log, from the browser shim or runner."""
    print(f"crawld-browser[{os.getpid()}]: {message}", file=sys.stderr, flush=True)


def prctl(option: int, value: Union[int, bytes]) -> bool:
    """Call prctl(2); False when it is unavailable or refused (never fatal here)."""
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0) == 0
    except Exception:
        return False


def job_title(env: Mapping[str, str], suffix: str = "") -> Optional[str]:
    """``crawld: job <id> <project>/<spider or script>`` from a job's environment
    (None outside a job: ``scrapy list`` runs with no CRAWLD_JOB_ID)."""
    job_id = env.get("CRAWLD_JOB_ID")
    if not job_id:
        return None
    project, name = env.get("CRAWLD_PROJECT", ""), env.get("CRAWLD_SPIDER", "")
    what = f"{project}/{name}" if project or name else "browse"
    return f"{TITLE_PREFIX}{job_id} {what}{suffix}"


def set_title(title: Optional[str]) -> None:
    """Show ``title`` as this process's command line (``ps``, /proc/PID/cmdline).

    Uses the ``setproctitle`` package when the interpreter has it, told to leave
    /proc/PID/environ intact (``SPT_NOENV``: the title then fits in the original
    command line, which crawld's bootstrap makes long enough). Without it, only the
    15-byte name of ``ps -o comm`` is set (``PR_SET_NAME``); nothing fails either way.
    """
    if not title:
        return
    try:
        had = os.environ.get("SPT_NOENV")
        os.environ["SPT_NOENV"] = "1"  # read once, at setproctitle's first call
        try:
            from setproctitle import setproctitle
            setproctitle(title)
        finally:
            if had is None:
                del os.environ["SPT_NOENV"]  # not passed on to the job's children
    except Exception:  # ImportError, or a broken build: the short name will do
        prctl(PR_SET_NAME, title.encode()[:15])


def exit_now(code: int) -> NoReturn:
    """End a forked child: flush its output, then ``os._exit`` (never unwind into the
    parent's code, nor run its atexit handlers)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    os._exit(code)


def reap(ended: Callable[[int, int], None]) -> None:
    """Collect every ended child without blocking: ``ended(pid, wait status)`` each."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        ended(pid, status)


def exit_code(status: int) -> int:
    """A raw wait status as a shell would report it: the code, or 128 + the signal."""
    code = os.waitstatus_to_exitcode(status)
    return code if code >= 0 else 128 - code


def descendants(root: int) -> list[int]:
    """Pids of every process whose ppid chain leads to ``root`` (zombies included).

    Read from /proc/<pid>/stat, which names the parent; a subreaper's orphaned
    descendants are re-parented to it and so are still found here.
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
