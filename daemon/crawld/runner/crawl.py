"""What crawld adds to a spider job's settings, in the job's own process (stdlib here;
Scrapy is imported inside functions).

``scrapy crawl`` loads the project's settings; crawld then adds, never in the user's
project and never by replacing one of its settings:

- the stats extension (stats.py), when the daemon gave the job a stats channel
  (``CRAWLD_STATS_FD``): an entry in ``EXTENSIONS_BASE`` at the lowest priority. A
  ``-s EXTENSIONS=...`` would replace the project's whole ``EXTENSIONS`` dict; an entry
  of the base dict merges with it, and a project can still switch the extension off
  with ``EXTENSIONS = {"crawld_runner.stats.StatsReporter": None}``.
- a feed of the items to ``CRAWLD_ITEMS`` (``<data>/items/<id>.jl``, JSON lines), only
  when the project configures no feed itself (``FEEDS`` and the older ``FEED_URI`` are
  empty once its settings are loaded), at the lowest priority too: a spider's
  ``custom_settings`` or a ``-s FEEDS=...`` replace it. Its storage is ``ItemsFile``
  (the ``crawld-items://`` scheme, registered in ``FEED_STORAGES_BASE``): Scrapy's own
  file storage buffers its writes, and a running job's items would show only in 8 KiB
  steps; this one writes each item as it is exported, one write per line.
"""
from __future__ import annotations

import os
from typing import Any, Optional, Sequence

from .stats import FD_ENV

EXTENSION = "crawld_runner.stats.StatsReporter"
ORDER = 1000     # after Scrapy's own extensions (CoreStats sets finish_reason first)
ITEMS_ENV = "CRAWLD_ITEMS"
SCHEME = "crawld-items"
STORAGE = "crawld_runner.crawl.ItemsFile"
FEED_OPTIONS = {"format": "jsonlines", "encoding": "utf-8", "store_empty": True}


def job_settings(argv: Sequence[str]) -> Optional[Any]:
    """The settings ``scrapy.cmdline.execute(argv, settings)`` should run with: the
    project's, as execute() itself would load them, plus crawld's additions. None
    (execute loads them itself) when there is nothing to add: not a crawl, or no
    stats channel nor items file given."""
    if len(argv) < 2 or argv[1] != "crawl":
        return None
    channel, items = os.environ.get(FD_ENV), os.environ.get(ITEMS_ENV)
    if not channel and not items:
        return None
    from scrapy.utils.project import get_project_settings
    settings = get_project_settings()
    if "EDITOR" in os.environ:  # as execute() does when it loads the settings
        settings["EDITOR"] = os.environ["EDITOR"]
    if channel:
        add_extension(settings)
    if items:
        add_feed(settings, items)
    return settings


def add_extension(settings: Any) -> None:
    """The stats extension as an entry of EXTENSIONS_BASE, at the lowest priority."""
    base = settings["EXTENSIONS_BASE"]
    if hasattr(base, "set"):
        base.set(EXTENSION, ORDER, priority="default")
    else:  # a plain dict (very old Scrapy)
        base.setdefault(EXTENSION, ORDER)


def has_own_feeds(settings: Any) -> bool:
    """Whether the project's settings configure a feed export themselves."""
    return bool(settings.getdict("FEEDS")) or bool(settings.get("FEED_URI"))


def add_feed(settings: Any, path: str) -> None:
    """Items to ``path`` as JSON lines, unless the project has feeds of its own."""
    if has_own_feeds(settings):
        return
    try:  # Scrapy 2.13+ keeps a "%" that is not a placeholder; older ones need "%%"
        from scrapy.extensions.feedexport import apply_uri_params  # noqa: F401
    except ImportError:
        path = path.replace("%", "%%")
    base = settings["FEED_STORAGES_BASE"]
    if hasattr(base, "set"):
        base.set(SCHEME, STORAGE, priority="default")
    else:
        base.setdefault(SCHEME, STORAGE)
    settings.set("FEEDS", {f"{SCHEME}://{path}": dict(FEED_OPTIONS)}, priority="default")


class ItemsFile:
    """The feed storage of crawld's items file (``crawld-items://<path>``): appends to
    the file the daemon created, unbuffered, so that each exported item is one write
    and the daemon can read a running job's items as they come."""

    def __init__(self, uri: str, *, feed_options: Optional[dict] = None) -> None:
        self.path = uri[len(SCHEME) + 3:] if uri.startswith(SCHEME + "://") else uri

    def open(self, spider: Any) -> Any:
        return open(self.path, "ab", buffering=0)

    def store(self, file: Any) -> None:
        file.close()
