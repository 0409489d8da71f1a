"""A ``crawld worker`` process of the cluster tests, in a network namespace or not, and
the ways a test makes it fail (killed alone, host death, frozen)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import Optional

import psutil

from tests.integration import netns
from tests.integration.conftest import end_process


class WorkerProcess:
    """One ``crawld worker`` (argv exactly as docs/cluster.md and the spec give it)."""

    def __init__(self, name: str, folder: str, broker: str, daemon_url: str, key: str,
                 concurrency: int, queues: str,
                 namespace: Optional[netns.Namespace] = None,
                 ca_file: Optional[str] = None) -> None:
        self.name = name
        self.ca_file = ca_file  # --ca-file: the daemon's certificate is the test CA's
        self.data_dir = os.path.join(folder, "data")
        self.log_path = os.path.join(folder, "worker.log")
        os.makedirs(folder, exist_ok=True)
        self.broker, self.daemon_url, self.key = broker, daemon_url, key
        self.concurrency, self.queues = concurrency, queues
        self.namespace = namespace
        self.proc: Optional[subprocess.Popen] = None
        self.started_at_log = 0  # the daemon log's length when this worker last started
        # every process seen under it (for close()); psutil checks a process' start time
        # before signalling, so a pid reused since (they wrap quickly here) is left alone
        self.seen: dict[int, psutil.Process] = {}

    @property
    def address(self) -> str:
        """The source address the daemon sees this worker's requests from."""
        return self.namespace.ns_ip if self.namespace is not None else "127.0.0.1"

    def argv(self) -> list[str]:
        argv = [sys.executable, "-m", "crawld", "worker", "--broker", self.broker,
                "--daemon", self.daemon_url, "--key", self.key, "--data-dir", self.data_dir,
                "--concurrency", str(self.concurrency), "--queues", self.queues,
                "--name", self.name] + (["--ca-file", self.ca_file] if self.ca_file else [])
        return self.namespace.argv(argv) if self.namespace is not None else argv

    def start(self, daemon_log_length: int = 0) -> "WorkerProcess":
        self.started_at_log = daemon_log_length
        with open(self.log_path, "a") as log:
            log.write("---- start\n")
            log.flush()
            # a session of its own, as under systemd: nothing the worker signals as a
            # group can reach the test process
            self.proc = subprocess.Popen(self.argv(), stdout=log, stderr=log,
                                         stdin=subprocess.DEVNULL, env=dict(os.environ),
                                         start_new_session=True)
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        with open(self.log_path, errors="replace") as fh:
            return fh.read()

    def tree(self) -> list[psutil.Process]:
        """The worker's live descendants (its jobs, their children), noted for close()."""
        if not self.alive():
            return []
        try:
            found = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        self.seen.update((p.pid, p) for p in found)
        return found

    def stop(self, timeout: float = 20) -> Optional[int]:
        """SIGTERM, then SIGKILL after ``timeout``; returns the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.tree()
        return end_process(self.proc, timeout)

    def kill(self) -> None:
        """SIGKILL the worker process alone (its jobs go on: a crashed worker)."""
        self.tree()
        if self.alive():
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait(10)

    def die(self) -> list[int]:
        """The host dies: the worker and every process of its jobs SIGKILLed at once
        (everything in its namespace, or its process tree on loopback). Returns the pids."""
        pids = [p.pid for p in self.tree()]
        if self.namespace is not None:
            pids = sorted(set(pids) | set(self.namespace.pids()))
        victims = [self.proc.pid] + pids if self.alive() else pids
        for pid in victims:  # stop them all first, so none reacts to another's death
            send_signal(pid, signal.SIGSTOP)
        for pid in victims:
            send_signal(pid, signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(10)
        return pids

    def pause(self) -> None:
        """SIGSTOP the worker process alone (a frozen or partitioned worker)."""
        self.tree()
        send_signal(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        send_signal(self.proc.pid, signal.SIGCONT)

    def sweep(self) -> None:
        """SIGKILL every process ever seen under this worker that still runs."""
        for proc in self.seen.values():
            try:
                if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                    proc.kill()
            except psutil.NoSuchProcess:
                pass


def send_signal(pid: int, sig: int) -> None:
    """``os.kill`` that ignores a process already gone."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
