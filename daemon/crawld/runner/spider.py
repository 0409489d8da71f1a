"""A spider job started directly (``preload = no``, or the zygote is gone), and ``scrapy list``.

``python -c BOOTSTRAP <runner dir> spider <scrapy args...>``: a session of its own (so
cancel reaches the whole process group), the job's title when it is a job, then Scrapy's
command line in this same process, as ``scrapy <args...>`` would run it.
"""
from __future__ import annotations

import os
import sys

from . import proc


def main() -> None:
    """Become the job and run Scrapy's command line; Scrapy exits the process."""
    os.setsid()
    proc.set_title(proc.job_title(os.environ))
    from scrapy.cmdline import execute
    execute(["scrapy", *sys.argv[1:]])
