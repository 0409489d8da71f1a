"""Live screenshots of browser jobs that run on workers (job-screenshot.png, issue 14).

The daemon cannot reach a remote job's control channel, so a screenshot request waits
here: it is handed to the worker that runs the attempt in its next heartbeat answer
(``screenshots``: ``{"ID/N": [{"req": R, "full_page": bool}]}``), the worker asks the
job's channel as the daemon's own route does and uploads the PNG (or the reason it
failed) to ``POST /cluster/screenshot``, which fires the waiting request. A request the
caller stopped waiting for (its timeout) is forgotten; one for an attempt that ended
fails as locally ("ended before its screenshot was taken"). Nothing of it goes through
the broker.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from twisted.internet.defer import Deferred

from .errors import CrawldError, NotFound

MAX_PENDING = 4          # screenshot requests waiting per remote attempt
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class TooManyShots(CrawldError):
    """A remote job already has MAX_PENDING screenshot requests waiting (429)."""

    code = 429


class ShotError(Exception):
    """The worker reported that the job's screenshot failed (its reason)."""


@dataclass
class Pending:
    """One screenshot request for a remote attempt."""

    waiting: Deferred
    full_page: bool
    handed: bool = False   # in a heartbeat answer already


class RemoteShots:
    """Screenshot requests for remote attempts, by attempt key and request id."""

    def __init__(self) -> None:
        self.last_req = 0
        self.pending: dict[str, dict[int, Pending]] = {}

    def request(self, key: str, job_id: str, full_page: bool) -> Deferred:
        """A screenshot of attempt ``key``'s page: fires with the PNG's bytes, fails
        with ShotError (the worker's reason) or NotFound (the attempt ended). Cancel it
        (a timeout does) to forget it. TooManyShots past MAX_PENDING waiting."""
        waiting_for = self.pending.setdefault(key, {})
        if len(waiting_for) >= MAX_PENDING:
            raise TooManyShots(f"job {job_id} has {MAX_PENDING} screenshot requests "
                               "waiting for its worker already; try again later")
        self.last_req += 1
        req = self.last_req
        waiting: Deferred = Deferred(canceller=lambda d: self._forget(key, req))
        waiting_for[req] = Pending(waiting, full_page)
        return waiting

    def _forget(self, key: str, req: int) -> None:
        found = self.pending.get(key)
        if found is not None:
            found.pop(req, None)
            if not found:
                del self.pending[key]

    def hand_out(self, key: str) -> list[dict]:
        """The requests for ``key`` not handed to its worker yet (each handed once)."""
        out = []
        for req, pending in self.pending.get(key, {}).items():
            if not pending.handed:
                pending.handed = True
                out.append({"req": req, "full_page": pending.full_page})
        return out

    def answer(self, key: str, req: int, data: Optional[bytes] = None,
               error: Optional[str] = None) -> bool:
        """The worker's upload (``data``) or failure (``error``) for request ``req``:
        fires the waiting request. False when no such request waits (it timed out)."""
        pending = self.pending.get(key, {}).get(req)
        if pending is None:
            return False
        self._forget(key, req)
        if error is None and data is not None and not data.startswith(PNG_MAGIC):
            error = "the worker sent something that is not a PNG"
        if error is not None or data is None:
            pending.waiting.errback(ShotError(error or "no image"))
        else:
            pending.waiting.callback(data)
        return True

    def end(self, key: str, job_id: str) -> None:
        """Attempt ``key`` ended (or is no longer current): its requests fail."""
        for pending in self.pending.pop(key, {}).values():
            pending.waiting.errback(NotFound(f"job {job_id} ended"))

    def prune(self, is_current: Callable[[str], bool]) -> None:
        """End the requests of every attempt that is no longer current."""
        for key in [k for k in self.pending if not is_current(k)]:
            self.end(key, key.rpartition("/")[0])
