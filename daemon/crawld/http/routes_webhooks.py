"""Webhook deliveries: what crawld POSTed of a job's events, and how each attempt went."""
from __future__ import annotations

from typing import Any

from twisted.internet.defer import inlineCallbacks

from ..deliveries import Delivery
from ..hookurls import redact
from .helpers import Router, arg, find_job
from .services import Services
from .views import iso_ms


def delivery_dict(delivery: Delivery) -> dict[str, Any]:
    """A delivery as webhook-deliveries.json shows it (the URL redacted as in logs)."""
    return {
        "delivery": delivery.id,
        "event": delivery.event,
        "url": redact(delivery.url),
        "state": delivery.state,
        "created": iso_ms(delivery.created),
        "next-attempt": iso_ms(delivery.next_attempt) if delivery.state == "pending" else None,
        "attempts": [{"number": a.number, "at": iso_ms(a.at),
                      "duration": round(a.duration, 3), "code": a.code, "error": a.error}
                     for a in delivery.attempts],
    }


@inlineCallbacks
def webhook_deliveries(s: Services, request: Any):
    """The deliveries of job ``id`` (404 for an unknown job), oldest first."""
    job = yield find_job(s, arg(request, "id"))
    found = (yield s.webhooks.deliveries(job.id)) if s.webhooks is not None else []
    return {"identifier": job.id, "deliveries": [delivery_dict(d) for d in found]}


def register(router: Router) -> None:
    """Add this module's routes to ``router``."""
    router.route("/webhook-deliveries.json", "GET")(webhook_deliveries)
