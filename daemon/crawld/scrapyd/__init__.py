"""The scrapyd listener: scrapyd 1.6's API and pages over crawld's services.

A second face of the same services as ``http`` (the native API): its own listener
(``[scrapyd] listen``), scrapyd's paths, parameters, shapes and messages, the same
credentials, roles, TLS and limits. It never imports ``http``, nor ``http`` it; what
both need is below them (``guards``, ``server``, ``auth``).

- ``services``: ``ScrapydServices`` (what the face receives) and the Protocols of
  the services as it uses them;
- ``front``: the root resource: authentication (Basic, scrapyd's ``Unauthorized``),
  the guards, body limits, OPTIONS, errors as scrapyd gives them;
- ``webservice``: the ``*.json`` endpoints;
- ``pages``: the HTML pages (``/``, ``/jobs``) and ``/logs/...``.
"""
from .front import build_scrapyd_app
from .services import ScrapydServices, ScrapydSettings

__all__ = ["ScrapydServices", "ScrapydSettings", "build_scrapyd_app"]
