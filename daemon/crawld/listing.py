"""``scrapy list`` of an unpacked project: its spiders' names, under a time limit.

Run at every push, egg upload and ``--reinit`` rebuild, in the jobs' interpreter and as
the ``run-as`` user, under a keeper that kills what the project's code started before
it exits (runner/keeper.py). Past ``list-timeout`` the whole tree is killed and the
push refused.
"""
from __future__ import annotations

import signal as signals
from typing import Any, Callable, Mapping, Optional

from twisted.internet.defer import inlineCallbacks

from . import tree
from .commands import RunAs, list_command
from .errors import ProjectError
from .process import CollectingProtocol

DRAIN_TIME = 1.0  # after `scrapy list` exits, how long its pipes may stay open
LIST_FAILED = ("'scrapy list' failed ({how}); this usually means the project has an error "
               "or needs packages the server does not have. Its stderr ends with:\n{tail}")


@inlineCallbacks
def list_spiders(reactor: Any, python: str, base_env: Mapping[str, str],
                 run_as: Optional[RunAs], list_timeout: float,
                 to_thread: Callable[..., Any], project_dir: str, name: str):
    """Run ``scrapy list`` in ``project_dir`` (project ``name``); fires with the
    spiders' names, or fails with ProjectError saying how it failed."""
    cmd = list_command(project_dir, name, python, base_env, run_as)
    proto = CollectingProtocol()
    reactor.spawnProcess(proto, cmd.executable, list(cmd.args), env=dict(cmd.env),
                         path=cmd.cwd, uid=cmd.uid, gid=cmd.gid,
                         childFDs={0: "w", 1: "r", 2: "r"})
    proto.transport.closeStdin()
    pid = proto.transport.pid
    timed_out = []

    def expire() -> None:
        if proto.transport.pid is not None:  # not reaped yet: the pid is still ours
            timed_out.append(True)
            tree.signal_tree(pid, signals.SIGKILL)
    timer = reactor.callLater(list_timeout, expire)
    try:
        exit = yield proto.exited
        # Something it left behind may hold the pipes open: read what is there,
        # then close them rather than wait for it.
        tree.signal_tree(pid, signals.SIGKILL, leader=False)
        if exit.code is None:  # killed (list-timeout): its keeper could not sweep
            yield to_thread(lambda: tree.kill_found(tree.find_lists(project_dir)))
        closer = reactor.callLater(DRAIN_TIME, proto.transport.loseConnection)
        yield proto.ended
        if closer.active():
            closer.cancel()
    finally:
        if timer.active():
            timer.cancel()
    if timed_out:
        how = f"timed out after {list_timeout:g} s (list-timeout)"
    else:
        how = None if exit.ok else (f"exit code {exit.code}" if exit.code is not None
                                    else f"signal {exit.signal}")
    if how:
        tail = bytes(proto.err).decode("utf-8", "replace").strip()[-2000:]
        raise ProjectError(LIST_FAILED.format(how=how, tail=tail or "(nothing)"))
    return [line.strip() for line in bytes(proto.out).decode("utf-8", "replace").splitlines()
            if line.strip()]
