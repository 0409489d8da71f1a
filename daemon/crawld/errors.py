"""One exception tree for everything a client can be told; each class knows its HTTP code.

The API converts these to ``{"status": "error", "msg": ...}`` in one place; anything that
is not a CrawldError is a bug and becomes a 500 with the traceback in the daemon's log.
"""
from __future__ import annotations


class CrawldError(Exception):
    """Base of every error whose message is meant for the client."""

    code = 400

    @property
    def msg(self) -> str:
        return str(self.args[0]) if self.args else self.__class__.__name__


class BadRequest(CrawldError):
    """A parameter is missing or malformed (400)."""

    code = 400


class Forbidden(CrawldError):
    """The request is understood but refused, e.g. a cross-site browser request (403)."""

    code = 403


class NotFound(CrawldError):
    """An unknown project, spider, job or log (404)."""

    code = 404


class Conflict(CrawldError):
    """The request contradicts the current state, e.g. removing a project in use (409)."""

    code = 409


class TooLarge(CrawldError):
    """The request body or archive is over its configured limit (413)."""

    code = 413


class ProjectError(CrawldError):
    """The pushed archive is not a usable project (400): bad zip, bad layout, failing list."""

    code = 400


class TooManyStreams(CrawldError):
    """Too many log or file streams are open at once (429)."""

    code = 429


class TooManyWaits(CrawldError):
    """Too many requests wait for jobs to end at once (``wait=``; 429)."""

    code = 429


class TooSlow(CrawldError):
    """A request's body did not arrive within ``[web] body-timeout`` and at
    ``body-min-rate`` (408); the connection is then closed."""

    code = 408


class TooManyConnections(CrawldError):
    """The connection is one more than ``[web] max-connections`` or, from its client,
    ``max-connections-per-client`` allows (503); it is answered and closed at once."""

    code = 503

    def response_headers(self) -> dict[str, list[str]]:
        """Headers the response must carry, name -> values."""
        return {"Retry-After": ["1"]}


def is_disk_full(exc: BaseException) -> bool:
    """Whether an error means no space is left: ENOSPC/EDQUOT, or SQLite's SQLITE_FULL."""
    import errno
    import sqlite3
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return isinstance(exc, sqlite3.Error) and "full" in str(exc).lower()


class ConfigError(Exception):
    """A configuration value is invalid; the message names the option. Stops start-up."""
