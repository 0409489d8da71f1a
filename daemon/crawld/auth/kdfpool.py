"""A bounded number of password key derivations at once, and a bounded queue before them.

scrypt costs tens of ms of CPU and ~16 MiB per Basic check (a cache miss, a wrong
password or an unknown user). Run in the reactor's thread pool without a bound, a flood
of such checks fills every thread that file reads, /proc walks and project pushes also
wait for, and spreading the tries over many addresses sidesteps the per-address limiter.
So at most ``slots`` derivations run at once (``[web] max-password-checks``) and at most
``waiting`` more wait; past that the answer is at once a 503 with ``Retry-After: 1``.

503, not 429: the bound is the server's capacity, shared by every client, and says
nothing about the one refused (429 is the failed-attempt limit, per client). Keys,
Digest and remembered Basic successes need no derivation, so they answer throughout.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

from twisted.internet.defer import Deferred, DeferredSemaphore, fail

from ..errors import CrawldError

#: Runs a blocking callable in a thread: ``to_thread(f, *args) -> Deferred`` of its result.
ToThread = Callable[..., Deferred[Any]]

#: How many checks may wait per slot by default: 16 × ~34 ms is about half a second.
WAITING_PER_SLOT = 16


class PasswordChecksBusy(CrawldError):
    """Too many password checks are running and waiting (503); retry in a second."""

    code = 503

    def __init__(self, msg: str, retry_after: int = 1) -> None:
        super().__init__(msg)
        self.retry_after = retry_after

    def response_headers(self) -> dict[str, list[str]]:
        """Headers the response must carry, name -> values."""
        return {"Retry-After": [str(self.retry_after)]}


class KdfPool:
    """Runs key derivations through ``to_thread``, at most ``slots`` at once and at most
    ``waiting`` queued (default ``WAITING_PER_SLOT`` per slot); see the module docstring.

    A queued derivation is not cancelled when its client goes away: its outcome is
    counted by the limiter, and the queue is bounded anyway.
    """

    def __init__(self, to_thread: ToThread, slots: int = 2,
                 waiting: Optional[int] = None) -> None:
        if slots < 1:
            raise ValueError("at least one password check must be allowed at once")
        self._to_thread = to_thread
        self._semaphore = DeferredSemaphore(slots)
        self.slots = slots
        self.waiting = WAITING_PER_SLOT * slots if waiting is None else waiting

    @property
    def queued(self) -> int:
        """How many derivations wait for a slot."""
        return len(self._semaphore.waiting)

    def run(self, f: Callable[..., Any], *args: Any) -> Deferred[Any]:
        """``f(*args)`` in a thread when a slot is free; fails with PasswordChecksBusy at
        once when every slot is taken and the queue is full."""
        if self._semaphore.tokens == 0 and self.queued >= self.waiting:
            return fail(PasswordChecksBusy(
                "too many password checks at once; retry in a second (API keys, Digest "
                "and a recently checked Basic password are not affected)"))
        return self._semaphore.run(self._to_thread, f, *args)
