"""A spider job started directly (``preload = no``, or the zygote is gone), and ``scrapy list``.

``python -c BOOTSTRAP <runner dir> spider <scrapy args...>``: a session of its own (so
cancel reaches the whole process group), the job's title (``crawld: job <id> ...``, or
``crawld: list <project>`` for a push's ``scrapy list``), then the keeper (keeper.py):
this process stays the job's subreaper and runs Scrapy's command line, as ``scrapy
<args...>`` would, in its one child. The fork comes before Scrapy is imported, so the
keeper stays a bare interpreter.
"""
from __future__ import annotations

import os
import sys
import traceback

from . import keeper, proc
from .crawl import job_settings


def run_scrapy(argv: list[str]) -> int:
    """Run Scrapy's command line ``argv`` in this process; returns the exit code it
    asked for (Scrapy ends by raising SystemExit). A crawl gets crawld's additions to
    its settings (crawl.py: the stats extension, the items feed)."""
    try:
        from scrapy.cmdline import execute
        settings = job_settings(argv)
        if settings is None:  # nothing added: Scrapy loads the settings itself
            execute(argv)
        else:
            execute(argv, settings)
        return 0
    except SystemExit as exc:
        if exc.code is None:
            return 0
        if isinstance(exc.code, int):
            return exc.code
        print(exc.code, file=sys.stderr)
        return 1
    except BaseException:
        traceback.print_exc()
        return 1


def main() -> None:
    """Become the job (or the list), keep it, and run Scrapy below; Scrapy's process
    exits through ``sys.exit`` as a freshly started ``scrapy`` would."""
    os.setsid()
    title = proc.list_title(os.environ) or proc.job_title(os.environ)
    proc.set_title(title)
    keeper.keep(lambda: run_scrapy(["scrapy", *sys.argv[1:]]), title, os.getppid(),
                finish=sys.exit)
