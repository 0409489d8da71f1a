"""HTTPS: the server's certificate and key (PEM), reloaded when they change on disk.

Let's Encrypt (certbot, acme.sh...) renews certificates by replacing the files; a daemon
that read them once would serve the old one until restarted. Each new connection asks
for the current context; at most every ``check_interval`` seconds the files' identity
(inode, size, mtime) is compared with what was loaded, and a change builds a new
context. A half-written renewal that does not load is logged and the previous
certificate stays in use, so a renewal can never take the API down.
"""
from __future__ import annotations

import os
import time
from typing import Any, Callable, Optional

from OpenSSL import SSL, crypto
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator
from twisted.logger import Logger
from zope.interface import implementer

from .errors import ConfigError

log = Logger(namespace="crawld.tls")


def _identity(paths: list[str]) -> tuple:
    found = []
    for path in paths:
        st = os.stat(path)
        found.append((st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(found)


def build_context(cert: str, key: str, chain: Optional[str] = None) -> SSL.Context:
    """A TLS 1.2+ server context from PEM files; raises on anything that does not load.

    ``cert`` may hold the whole chain (fullchain.pem); ``chain`` adds intermediates."""
    ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
    ctx.set_min_proto_version(SSL.TLS1_2_VERSION)
    ctx.set_options(SSL.OP_NO_COMPRESSION | SSL.OP_CIPHER_SERVER_PREFERENCE)
    ctx.use_certificate_chain_file(cert.encode())
    if chain:
        with open(chain, "rb") as fh:
            pem = fh.read()
        marker = b"-----END CERTIFICATE-----"
        for block in pem.split(marker)[:-1]:
            ctx.add_extra_chain_cert(crypto.load_certificate(crypto.FILETYPE_PEM,
                                                             block + marker))
    ctx.use_privatekey_file(key.encode())
    ctx.check_privatekey()
    return ctx


@implementer(IOpenSSLServerConnectionCreator)
class ReloadingCertificate:
    """Gives each new TLS connection the certificate currently on disk."""

    def __init__(self, cert: str, key: str, chain: Optional[str] = None,
                 clock: Callable[[], float] = time.time, check_interval: float = 5.0) -> None:
        self.paths = [p for p in (cert, key, chain) if p]
        self.cert, self.key, self.chain = cert, key, chain
        self.clock = clock
        self.check_interval = check_interval
        try:
            self.context = build_context(cert, key, chain)
            self.loaded = _identity(self.paths)
        except (OSError, SSL.Error, crypto.Error, ValueError) as exc:
            raise ConfigError(f"[web] cert/key/chain: cannot load {', '.join(self.paths)}: "
                              f"{exc}") from exc
        self.checked = clock()

    def current(self) -> SSL.Context:
        """The context to use now, rebuilt first if the files changed."""
        now = self.clock()
        if now - self.checked >= self.check_interval:
            self.checked = now
            try:
                found = _identity(self.paths)
                if found != self.loaded:
                    self.context = build_context(self.cert, self.key, self.chain)
                    self.loaded = found
                    log.info("TLS certificate reloaded from {cert}", cert=self.cert)
            except (OSError, SSL.Error, crypto.Error, ValueError) as exc:
                log.error("TLS certificate files changed but do not load ({exc}); "
                          "still serving the previous certificate", exc=exc)
        return self.context

    def serverConnectionForTLS(self, protocol: Any) -> SSL.Connection:  # noqa: N802
        return SSL.Connection(self.current(), None)
