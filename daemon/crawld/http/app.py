"""Builds the API: ``build_app(services)`` is the root resource of the native API.

Nothing is registered at import time: each call makes a new Klein app, has each route
module add its routes to it, and installs the error handling. The daemon builds one
over its real services (service.py); tests build the same app over fakes.
"""
from __future__ import annotations

from twisted.web.resource import IResource

from . import (routes_browser, routes_cluster, routes_dashboard, routes_events, routes_jobs, routes_logs,
               routes_meta, routes_metrics, routes_projects, routes_results, routes_session,
               routes_webhooks)
from .helpers import ALL_METHODS, Router, error_response, install_error_handlers
from ..server import ExactRouter
from .services import Services

#: The route modules, one per noun; each has ``register(router)``.
ROUTE_MODULES = (routes_meta, routes_projects, routes_jobs, routes_logs, routes_results,
                 routes_browser, routes_webhooks, routes_events, routes_metrics, routes_session,
                 routes_dashboard, routes_cluster)


def build_router(services: Services) -> Router:
    """A new app over ``services``: every route and the error handlers, on a Klein app of
    its own. ``Router.methods`` tells what each path serves (for docs and tests)."""
    router = Router(services)
    for module in ROUTE_MODULES:
        module.register(router)
    install_error_handlers(router)
    return router


def build_app(services: Services) -> IResource:
    """The API's root resource over ``services`` (put it in server.make_site): routes
    without variables are found by their exact path and called directly, every other
    request goes through Klein; both run the same endpoints and give the same answers
    (Klein's dispatch cost more than status.json's own work)."""
    return app_resource(build_router(services))


def app_resource(router: Router) -> IResource:
    """``router``'s routes as the root resource (``build_app``): for the daemon, which
    also gives the header gate ``router.is_public``."""
    return ExactRouter(router.exact, router.klein.resource(), error_response,
                       frozenset(m.encode() for m in ALL_METHODS))
