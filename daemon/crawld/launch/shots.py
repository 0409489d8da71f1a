"""A worker's side of live screenshots (job-screenshot.png of a job on a worker).

The daemon asks in a heartbeat answer (``screenshots``: ``{"ID/N": [{"req": R,
"full_page": bool}]}``); for each request the worker asks the job's control channel
exactly as the daemon's own route does (``Channel.screenshot`` into the job's temp dir
on this host, within ``[browser] screenshot-timeout``), reads the PNG and uploads it to
``POST /cluster/screenshot?key=ID/N&req=R``, or reports why it failed (``&error=``). An
upload that cannot reach the daemon is dropped: the daemon's request times out.
"""
from __future__ import annotations

import os
from typing import Any, Callable

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.logger import Logger

from ..errors import NotFound
from ..http.files import read_screenshot

log = Logger(namespace="crawld.worker")


class ShotFailed(Exception):
    """Why the job's screenshot could not be taken (told to the daemon)."""


@inlineCallbacks
def take(browsers: Any, job_id: str, full_page: bool, reactor: Any,
         to_thread: Callable[..., Deferred]):
    """The PNG of the running job's page (bytes), taken now; ShotFailed otherwise."""
    channel = browsers.channels.get(job_id)
    if channel is None:
        raise ShotFailed("the job has no control channel on its worker (it ended)")
    shot = f"{channel.next_shot + 1}.png"
    path = os.path.join(browsers.tmp_dir(job_id), "shots", shot)
    limit = browsers.settings.screenshot_timeout
    waiting = channel.screenshot(path, full_page)
    waiting.addTimeout(limit, reactor)
    try:
        reply = yield waiting
    except NotFound:
        raise ShotFailed("the job ended before its screenshot was taken") from None
    except Exception:
        raise ShotFailed(f"the job did not take a screenshot within {limit:g} s "
                         "(screenshot-timeout)") from None
    if not reply.get("ok"):
        raise ShotFailed(str(reply.get("error") or "unknown"))
    try:
        data = yield to_thread(read_screenshot, browsers.tmp_root, job_id, "shots", shot)
    except (OSError, ValueError) as exc:
        raise ShotFailed(f"the job's screenshot cannot be read: {exc}") from None
    return data


@inlineCallbacks
def relay(client: Any, browsers: Any, key: str, job_id: str, req: int, full_page: bool,
          reactor: Any, to_thread: Callable[..., Deferred]):
    """Take screenshot request ``req`` of attempt ``key`` and send the daemon the PNG or
    the reason it failed. Never fails (what goes wrong is logged)."""
    try:
        if browsers is None:
            raise ShotFailed("this worker runs no browser jobs")
        data = yield take(browsers, job_id, full_page, reactor, to_thread)
        reply = yield client.screenshot(key, req, data=data)
    except ShotFailed as exc:
        try:
            reply = yield client.screenshot(key, req, error=str(exc))
        except Exception as sent:
            log.warn("job {key}: screenshot {req} failed ({why}) and could not be "
                     "reported: {exc}", key=key, req=req, why=exc, exc=sent)
            return None
    except Exception as exc:
        log.warn("job {key}: screenshot {req} could not be sent: {exc}", key=key,
                 req=req, exc=exc)
        return None
    if not reply.ok:
        log.info("job {key}: screenshot {req} refused: {msg}", key=key, req=req,
                 msg=reply.body.get("msg"))
    return reply.ok


def relay_all(client: Any, browsers: Any, key: str, job_id: str, asked: Any, reactor: Any,
              to_thread: Callable[..., Deferred]) -> None:
    """Relay each well-formed request of a heartbeat answer's list for attempt ``key``."""
    for item in asked if isinstance(asked, list) else []:
        if isinstance(item, dict) and isinstance(item.get("req"), int):
            relay(client, browsers, key, job_id, item["req"], bool(item.get("full_page")),
                  reactor, to_thread)
