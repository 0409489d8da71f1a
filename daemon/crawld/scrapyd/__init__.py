"""The scrapyd listener: scrapyd 1.6's API and pages over crawld's services.

A second face of the same services as ``http`` (the native API): its own listener
(``[scrapyd] listen``), scrapyd's paths, parameters, shapes and messages, the same
credentials, roles, TLS and limits. It never imports ``http``, nor ``http`` it; what
both need is below them (``guards``, ``server``, ``auth``).

- ``services``: ``ScrapydServices`` (what the face receives) and the Protocols of
  the services as it uses them;
- ``front``: the root resource: authentication (Basic, scrapyd's ``Unauthorized``),
  the guards, body limits, OPTIONS, errors as scrapyd gives them;
- ``view``: ``JobsView``, scrapyd's jobs in memory, kept by the job events (what
  status.json, listjobs.json and the pages show, without a store round trip);
- ``webservice``: the ``*.json`` endpoints;
- ``pages``: the HTML pages (``/``, ``/jobs``) and ``/logs/...``.
"""
from .front import build_scrapyd_app, error_answer, header_gate as scrapyd_gate
from .services import ScrapydServices, ScrapydSettings
from .view import JobsView

__all__ = ["JobsView", "ScrapydServices", "ScrapydSettings", "build_scrapyd_app",
           "error_answer", "scrapyd_gate"]
