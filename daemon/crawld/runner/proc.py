"""Process helpers shared by the zygote, the browser shim and the runners (stdlib only).

Process titles: every job process crawld starts calls itself ``crawld: job <id>
<project>/<spider or script>`` (a browse job: ``crawld: job <id> browse``), the process
it runs Scrapy or the browser in adds `` (scrapy)`` or `` (runner)``, a push's ``scrapy
list`` is ``crawld: list <project>`` and the zygote ``crawld: zygote``, so that ``ps``
tells them apart and a restarted daemon finds a job's processes by title even when
their environment is not the job's (a zygote-forked process keeps the zygote's
``/proc/PID/environ``). The daemon's ``tree.find_job`` matches the same prefix,
``TITLE_PREFIX``.
"""
from __future__ import annotations

import ctypes
import os
import resource
import signal
import sys
from typing import Callable, Mapping, NoReturn, Optional, Union

PR_SET_PDEATHSIG = 1
PR_SET_NAME = 15
PR_SET_CHILD_SUBREAPER = 36
TITLE_PREFIX = "crawld: job "
LIST_PREFIX = "crawld: list "
LIST_ENV = "CRAWLD_LIST"  # a push's ``scrapy list``: the staging directory it lists


def note(message: str, who: str = "crawld-browser") -> None:
    """A line for the job's stderr log, from a keeper, the browser shim or runner."""
    print(f"{who}[{os.getpid()}]: {message}", file=sys.stderr, flush=True)


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


def list_title(env: Mapping[str, str]) -> Optional[str]:
    """``crawld: list <project>`` for a push's ``scrapy list`` (None otherwise)."""
    if not env.get(LIST_ENV):
        return None
    return f"{LIST_PREFIX}{env.get('CRAWLD_PROJECT') or '?'}"


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


def flush() -> None:
    """Flush Python's stdout and stderr (before a fork or an ``os._exit``)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass


def exit_now(code: int) -> NoReturn:
    """End a forked child: flush its output, then ``os._exit`` (never unwind into the
    parent's code, nor run its atexit handlers)."""
    flush()
    os._exit(code)


def end_as(status: int) -> NoReturn:
    """End this process as the child whose raw wait ``status`` it collected ended, so
    that its own parent sees the same: the same exit code, or death by the same signal
    (with no second core dump). Used by a keeper, which stands for its child."""
    flush()
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            if sig not in (signal.SIGKILL, signal.SIGSTOP):
                signal.signal(sig, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {sig})
            os.kill(os.getpid(), sig)  # delivered before kill() returns: we end here
        except (OSError, ValueError):
            pass
    os._exit(exit_code(status))


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


def has_children_files() -> bool:
    """Whether the kernel lists a task's children in /proc/<pid>/task/<tid>/children
    (CONFIG_PROC_CHILDREN: Debian's and most distributions' kernels have it)."""
    return os.path.exists(f"/proc/{os.getpid()}/task/{os.getpid()}/children")


def children(pid: int) -> list[int]:
    """Pids of ``pid``'s children (zombies included): a few small reads of
    /proc/<pid>/task/*/children, each a snapshot taken under the kernel's task list
    lock ([] once ``pid`` is gone); without them, a scan of /proc."""
    if not has_children_files():
        return _children_by_scan().get(pid, [])
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    found: list[int] = []
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children", "rb") as fh:
                found.extend(int(p) for p in fh.read().split())
        except OSError:
            continue  # the thread ended while we looked
    return found


def descendants(root: int) -> list[int]:
    """Pids of every process whose ppid chain leads to ``root`` (zombies included).

    A subreaper's orphaned descendants are re-parented to it and so are still found
    here. Walks the children files from ``root`` down (see ``children``): the cost
    follows the size of the tree, not of the machine's process table.
    """
    below = children if has_children_files() else _children_by_scan().get
    found: list[int] = []
    stack = [root]
    while stack:
        for child in below(stack.pop()) or ():
            found.append(child)
            stack.append(child)
    return found


def _children_by_scan() -> dict[int, list[int]]:
    """Every process's children, from /proc/<pid>/stat of each (it names the parent)."""
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
    return children
