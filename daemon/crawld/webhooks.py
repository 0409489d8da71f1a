"""Webhooks: each wanted job event becomes a persisted delivery, POSTed until it lands.

An observer of ``events.JobEvents``: a job reaching RUNNING is ``started``, one reaching
SUCCESSFUL, FAILED or CANCELED is ``ended``. For each event in ``[webhooks] events``
the job object (list-jobs' view of it, plus ``event`` and ``delivery``) is made into a
body once and stored as a pending delivery per URL (``[webhooks] url``, the job's own
``webhook``). Deliveries are then tried, at most ``concurrency`` at a time, each attempt
bounded by ``timeout``; a 2xx is recorded as delivered in the same transaction as the
attempt, a failure that may pass (no answer, 408, 429, 5xx) is retried with exponential
backoff until ``retry-for`` seconds after the event, any other answer (3xx, 4xx) fails
the delivery at once. Nothing waits on this: the observer only submits a store write,
so a slow or dead endpoint never delays a job, the supervisor or the API.

A restart loses no pending delivery (they are rows) and repeats no delivered one; the
one exception is a crash between a 2xx and its commit, which repeats that delivery
once: receivers dedupe by ``X-Crawld-Delivery`` (docs/api.md, "Webhooks").
"""
from __future__ import annotations

import hashlib
import heapq
import hmac
import json
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Optional

from twisted.internet.defer import (CancelledError, Deferred, DeferredList, inlineCallbacks,
                                    maybeDeferred)
from twisted.logger import Logger

from . import deliveries as dv
from .config import Settings
from .deliveries import Delivery, DeliveryAttempt
from .errors import BadRequest
from .events import JobEvents
from .hookurls import HostPolicy, redact
from .model import Job, JobStatus
from .seams import Clock
from .webhook_client import AgentPoster, Outcome, Poster

log = Logger(namespace="crawld.webhooks")

RECORD_RETRY = 5.0  # seconds before a store write that failed (a full disk) is retried
STOP_GRACE = 3.0    # seconds a stopping daemon lets attempts in flight finish


@dataclass(frozen=True)
class WebhookSettings:
    """``[webhooks]``: where events go, how they are signed, how hard crawld tries."""

    url: str = ""                       # every job's events go here ("" : nowhere)
    secret: str = ""                    # HMAC-SHA256 key of X-Crawld-Signature ("" : unsigned)
    events: tuple[str, ...] = (dv.ENDED,)
    timeout: float = 10.0               # seconds per attempt, connect to status line
    retry_for: float = 86400.0          # seconds after the event that retries may go on
    backoff: float = 5.0                # first retry delay; doubles per failure
    backoff_max: float = 600.0          # the longest delay between two attempts
    concurrency: int = 4                # attempts in flight at once
    job_urls: HostPolicy = HostPolicy()  # which per-job webhook= URLs are allowed


def settings_of(s: Settings) -> WebhookSettings:
    """The ``[webhooks]`` options of the daemon's configuration."""
    return WebhookSettings(
        url=s.webhook_url, secret=s.webhook_secret, events=s.webhook_events,
        timeout=s.webhook_timeout, retry_for=s.webhook_retry_for, backoff=s.webhook_backoff,
        backoff_max=s.webhook_backoff_max, concurrency=s.webhook_concurrency,
        job_urls=HostPolicy.of(s.webhook_allow_job_urls, s.webhook_job_url_hosts))


def sign(secret: str, body: bytes) -> str:
    """``X-Crawld-Signature``'s value: ``sha256=`` and the hex HMAC-SHA256 of ``body``."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def event_of(job: Job) -> Optional[str]:
    """The webhook event a job's new state is: started, ended, or None (no event)."""
    if job.status is JobStatus.RUNNING:
        return dv.STARTED
    return dv.ENDED if job.status.completed else None


def backoff_delay(settings: WebhookSettings, failures: int) -> float:
    """Seconds to wait after the ``failures``-th failed attempt: backoff, doubled each
    time, never more than backoff_max."""
    return min(settings.backoff * 2.0 ** min(failures - 1, 60), settings.backoff_max)


def retryable(outcome: Outcome) -> bool:
    """Whether another attempt may succeed: no answer, 408, 429 or a 5xx. Any other
    answer (3xx: redirects are not followed; 4xx: the receiver refuses it) is final."""
    code = outcome.code
    return code is None or code in (408, 429) or code >= 500


def decide(settings: WebhookSettings, delivery: Delivery, outcome: Outcome,
           now: float) -> tuple[str, Optional[float]]:
    """The delivery's next state after an attempt (its ``tried``-th + 1): delivered,
    failed, or pending with the time of the next attempt (a Retry-After within
    backoff_max is honoured). A retry that would come later than retry-for after the
    event is not made."""
    if outcome.ok:
        return dv.DELIVERED, None
    if not retryable(outcome):
        return dv.FAILED, None
    delay = max(backoff_delay(settings, delivery.tried + 1),
                min(outcome.retry_after or 0.0, settings.backoff_max))
    if now + delay > delivery.created + settings.retry_for:
        return dv.FAILED, None
    return dv.PENDING, now + delay


class Webhooks:
    """Makes deliveries of job events and sends them (see the module's docstring)."""

    def __init__(self, reactor: Clock, store: Any, events: JobEvents,
                 settings: WebhookSettings, view: Callable[[Job], dict[str, Any]],
                 poster: Optional[Poster] = None) -> None:
        """``store``: store.Store (its delivery methods). ``view``: a job as the API
        shows it (http.views.job_dict, handed in by the composition root)."""
        self.reactor = reactor
        self.store = store
        self.settings = settings
        self.view = view
        self.poster = poster or AgentPoster(reactor, settings.timeout)
        self.due: dict[str, float] = {}                # pending id -> when it is next tried
        self.heap: list[tuple[float, str]] = []        # (when, id); stale entries skipped
        self.in_flight: dict[str, Deferred] = {}   # id -> the attempt (post, then record)
        self.posting: dict[str, Deferred] = {}     # id -> the POST of that attempt
        self.timer: Any = None
        self.running = False
        self.stopped = False
        events.subscribe(self.job_changed)

    # -- the policy of per-job URLs ---------------------------------------------------
    def vet(self, url: str) -> None:
        """400 when ``url`` may not be a job's ``webhook`` here ([webhooks] allow-job-urls,
        job-url-hosts)."""
        refusal = self.settings.job_urls.refusal(url)
        if refusal:
            raise BadRequest(f"parameter 'webhook': {refusal}")

    def deliveries(self, job_id: str) -> "Deferred[list[Delivery]]":
        """The job's deliveries with their attempts, oldest first (the API's view)."""
        return self.store.job_deliveries(job_id)

    # -- events become deliveries -----------------------------------------------------
    def targets(self, job: Job) -> list[str]:
        """The URLs a job's events go to: the configured one, and the job's own."""
        return list(dict.fromkeys(u for u in (self.settings.url, job.webhook) if u))

    def job_changed(self, job: Job) -> None:
        """An observer of JobEvents: store a delivery per URL for a wanted event. Only a
        store write is submitted; nothing here waits."""
        event = event_of(job)
        if event is None or event not in self.settings.events:
            return
        urls = self.targets(job)
        if not urls:
            return
        now = self.reactor.seconds()
        shown = self.view(job)
        for url in urls:
            delivery_id = str(uuid.uuid4())
            body = json.dumps({**shown, "event": event, "delivery": delivery_id},
                              ensure_ascii=False).encode("utf-8")
            self._add(Delivery(delivery_id, job.id, event, url, body, dv.PENDING, now, now))

    def _add(self, delivery: Delivery) -> None:
        def added(new: bool) -> None:
            if new:
                log.debug("job {job}: {event} delivery {id} to {url}", job=delivery.job_id,
                          event=delivery.event, id=delivery.id, url=redact(delivery.url))
                self._queue(delivery.id, delivery.next_attempt or delivery.created)

        def failed(failure: Any) -> None:
            log.failure("storing webhook delivery {id} of job {job} failed; retrying in "
                        "{delay:g} s", failure, id=delivery.id, job=delivery.job_id,
                        delay=RECORD_RETRY)
            if not self.stopped:
                self.reactor.callLater(RECORD_RETRY, self._add, delivery)
        self.store.add_delivery(delivery).addCallbacks(added, failed)

    # -- start and stop ---------------------------------------------------------------
    @inlineCallbacks
    def start(self):
        """Queue the deliveries a previous daemon left pending, then start sending."""
        due = yield self.store.due_deliveries()
        for delivery_id, at in due:
            self._queue(delivery_id, at)
        self.running = True
        if due:
            log.info("webhooks: {n} pending deliveries to send", n=len(due))
        self._pump()

    def stop(self) -> Deferred:
        """Start no more attempts; fires once those in flight are recorded. They get
        STOP_GRACE seconds (at most ``timeout``) to be answered, then are cancelled and
        recorded as failed attempts: the next start tries them again."""
        self.stopped = True
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None
        if not self.in_flight:
            return DeferredList([])
        done = DeferredList(list(self.in_flight.values()), consumeErrors=True)

        def cut() -> None:
            for posting in list(self.posting.values()):
                posting.cancel()
        cutting = self.reactor.callLater(min(STOP_GRACE, self.settings.timeout), cut)
        return done.addBoth(lambda r: (cutting.active() and cutting.cancel(), r)[1])

    # -- the queue: one timer for the earliest due delivery ---------------------------
    def _queue(self, delivery_id: str, at: float) -> None:
        if self.due.get(delivery_id) == at:
            return  # queued already (loaded at start and made by an event alike)
        self.due[delivery_id] = at
        heapq.heappush(self.heap, (at, delivery_id))
        self._pump()

    def _pump(self) -> None:
        """Start every due attempt there is room for; arm the timer for the next one."""
        if not self.running or self.stopped:
            return
        now = self.reactor.seconds()
        while self.heap and len(self.in_flight) < self.settings.concurrency:
            at, delivery_id = self.heap[0]
            if self.due.get(delivery_id) != at:
                heapq.heappop(self.heap)  # stale: re-queued for another time, or started
                continue
            if at > now:
                break
            heapq.heappop(self.heap)
            del self.due[delivery_id]
            self._start(delivery_id)
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None
        if self.heap and len(self.in_flight) < self.settings.concurrency:
            self.timer = self.reactor.callLater(max(0.0, self.heap[0][0] - now), self._tick)

    def _tick(self) -> None:
        self.timer = None
        self._pump()

    def _start(self, delivery_id: str) -> None:
        attempt = self._attempt(delivery_id)
        self.in_flight[delivery_id] = attempt

        def done(following: Optional[float]) -> None:
            self.in_flight.pop(delivery_id, None)
            if following is not None and not self.stopped:
                self._queue(delivery_id, following)
            else:
                self._pump()
        attempt.addErrback(lambda f: log.failure("webhook delivery {id} failed", f,
                                                 id=delivery_id)).addCallback(done)

    # -- one attempt ------------------------------------------------------------------
    def headers(self, delivery: Delivery) -> dict[str, str]:
        """The headers of the delivery's next attempt; the signature is made with the
        secret in force now, over the stored body."""
        found = {"Content-Type": "application/json", "X-Crawld-Event": delivery.event,
                 "X-Crawld-Delivery": delivery.id, "X-Crawld-Job": delivery.job_id,
                 "X-Crawld-Attempt": str(delivery.tried + 1)}
        if self.settings.secret:
            found["X-Crawld-Signature"] = sign(self.settings.secret, delivery.body)
        return found

    @inlineCallbacks
    def _attempt(self, delivery_id: str):
        """Try the delivery once and record how it went; fires with when it is to be
        tried next (None: delivered, failed, gone)."""
        delivery = yield self.store.get_delivery(delivery_id)
        if delivery is None or delivery.state != dv.PENDING:
            return None  # purged with its job, or settled
        began = self.reactor.seconds()
        posting = maybeDeferred(self.poster.post, delivery.url, delivery.body,
                                self.headers(delivery))
        self.posting[delivery_id] = posting
        try:
            outcome = yield posting
        except CancelledError:
            outcome = Outcome(error="cut short: the daemon stopped")
        except Exception as exc:  # a Poster reports, it should not fail; if it does:
            outcome = Outcome(error=f"{type(exc).__name__}: {exc}"[:300])
        finally:
            self.posting.pop(delivery_id, None)
        now = self.reactor.seconds()
        state, following = decide(self.settings, delivery, outcome, now)
        attempt = DeliveryAttempt(delivery.tried + 1, began, max(0.0, now - began),
                                  outcome.code, outcome.error)
        try:
            recorded = yield self.store.record_attempt(delivery_id, attempt, state, following)
        except Exception as exc:
            # not recorded: try the delivery again (a 2xx lost here is sent again once)
            log.error("recording webhook delivery {id} failed ({exc}); it is tried again "
                      "in {delay:g} s", id=delivery_id, exc=exc, delay=RECORD_RETRY)
            return now + RECORD_RETRY
        if not recorded:
            return None
        self._log(delivery, attempt, state, following)
        return following

    def _log(self, delivery: Delivery, attempt: DeliveryAttempt, state: str,
             following: Optional[float]) -> None:
        where = redact(delivery.url)
        if state == dv.DELIVERED:
            log.info("job {job}: {event} delivered to {url} (attempt {n}, HTTP {code})",
                     job=delivery.job_id, event=delivery.event, url=where, n=attempt.number,
                     code=attempt.code)
        elif state == dv.FAILED:
            log.warn("job {job}: {event} webhook to {url} given up after attempt {n}: "
                     "{error}", job=delivery.job_id, event=delivery.event, url=where,
                     n=attempt.number, error=attempt.error)
        else:
            log.info("job {job}: {event} webhook to {url} attempt {n} failed ({error}); "
                     "next in {delay:.1f} s", job=delivery.job_id, event=delivery.event,
                     url=where, n=attempt.number, error=attempt.error,
                     delay=(following or 0) - attempt.at - attempt.duration)
