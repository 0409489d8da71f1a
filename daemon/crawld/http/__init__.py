"""The native HTTP API: ``app.build_app(services)`` builds the root resource.

Modules: ``services`` (what routes receive, and a Protocol per service), ``helpers``
(parameters, JSON, errors, the endpoint wrapper), one ``routes_*`` module per noun,
``views`` and ``files`` (what routes show and read), ``server`` (the Site and request
class). Importing this package registers nothing: every app is built by a call.
"""
