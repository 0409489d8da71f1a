"""Debian's redis-server as the cluster tests' Celery broker: one process on a free port
of the addresses it is given, AOF on, restartable on the same data."""
from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
from typing import Any, Optional, Sequence

from tests.conftest import wait_for
from tests.integration.conftest import end_process
from tests.integration.pki import ServerTLS

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` now (the kernel's pick; closed again at once)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class RedisServer:
    """Debian's redis-server on ``binds`` at one port, AOF on, no RDB snapshots, its data
    in ``folder``: stopped (SIGTERM, which fsyncs the AOF) and started again on the same
    data by :meth:`stop` / :meth:`start`. With ``tls``, it speaks TLS only (its plain
    port off) and its URLs are ``rediss://`` trusting the test CA."""

    def __init__(self, folder: str, binds: Sequence[str], port: Optional[int] = None,
                 tls: Optional[ServerTLS] = None) -> None:
        self.folder = folder
        self.tls = tls
        os.makedirs(folder, exist_ok=True)
        self.binds = list(binds)
        self.port = port or free_port()
        self.log_path = os.path.join(folder, "redis.log")
        self.proc: Optional[subprocess.Popen] = None

    def url(self, host: str = "127.0.0.1", db: int = 0) -> str:
        if self.tls is not None:
            return (f"rediss://{host}:{self.port}/{db}?ssl_cert_reqs=required"
                    f"&ssl_ca_certs={self.tls.ca}")
        return f"redis://{host}:{self.port}/{db}"

    def _port_args(self) -> list[str]:
        if self.tls is None:
            return ["--port", str(self.port)]
        return ["--port", "0", "--tls-port", str(self.port),
                "--tls-cert-file", self.tls.cert, "--tls-key-file", self.tls.key,
                "--tls-ca-cert-file", self.tls.ca, "--tls-auth-clients", "no"]

    def start(self) -> "RedisServer":
        with open(self.log_path, "a") as log:
            self.proc = subprocess.Popen(
                [REDIS_SERVER, *self._port_args(), "--bind", *self.binds,
                 "--save", "", "--appendonly", "yes", "--dir", self.folder,
                 "--protected-mode", "no", "--daemonize", "no"],
                stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        wait_for(self.ping, 30, what="redis-server to answer PING")
        return self

    def ping(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"redis-server exited {self.proc.returncode}:\n"
                                 + open(self.log_path).read()[-3000:])
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as raw:
                sock = raw
                if self.tls is not None:
                    sock = ssl.create_default_context(cafile=self.tls.ca).wrap_socket(
                        raw, server_hostname="127.0.0.1")
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM (Redis fsyncs the AOF and exits) and wait; returns the exit code."""
        return 0 if self.proc is None else end_process(self.proc, timeout)

    def client(self) -> Any:
        """A redis-py client on the root namespace's side."""
        import redis
        if self.tls is not None:
            return redis.Redis(host="127.0.0.1", port=self.port, db=0, ssl=True,
                               ssl_ca_certs=self.tls.ca)
        return redis.Redis(host="127.0.0.1", port=self.port, db=0)
