"""crawld: a crawl daemon that schedules and supervises Scrapy spiders.

Kept import-free on purpose: job processes start through ``python -m crawld.runner``
and must not pay for importing Twisted.
"""

__version__ = "0.1.0"
