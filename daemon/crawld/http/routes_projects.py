"""Projects: push a version, list projects, their spiders and versions, delete a version,
remove a project."""
from __future__ import annotations

from typing import Any

from twisted.internet.defer import inlineCallbacks

from ..errors import BadRequest, NotFound
from .helpers import Router, arg
from .services import Services
from .views import iso


@inlineCallbacks
def push_project(s: Services, request: Any):
    """Store an uploaded zip (a file part or a url-encoded field) as the new version."""
    values = request.args.get(b"archive")
    if not values:
        raise BadRequest("missing parameter 'archive' (a zip, as a file or form field)")
    project = yield s.projects.push(values[0], s.web.max_archive)
    return {"name": project.name, "spiders": list(project.spiders),
            "scripts": list(project.scripts)}


def list_projects(s: Services, request: Any) -> dict[str, Any]:
    return {"projects": s.projects.names()}


def list_spiders(s: Services, request: Any) -> dict[str, Any]:
    name = arg(request, "project")
    return {"project": name, "spiders": list(s.projects.get(name).spiders)}


def list_versions(s: Services, request: Any) -> dict[str, Any]:
    """A project's stored versions in scrapyd's order; the last one runs by default."""
    name = arg(request, "project")
    s.projects.get(name)  # 404 for an unknown project
    return {"project": name, "versions": list_versions_of(s, name)}


def list_versions_of(s: Services, name: str) -> list[dict[str, Any]]:
    """The stored versions of project ``name`` as list-versions.json shows them (none
    when the project is gone)."""
    try:
        current = s.projects.get(name)
    except NotFound:
        return []
    found = [s.projects.get_version(name, v) for v in s.projects.version_names(name)]
    return [{"name": v.name, "kind": v.kind, "spiders": list(v.spiders),
             "scripts": list(v.scripts), "pushed": iso(v.pushed, None),
             "current": v.path == current.path} for v in found]


@inlineCallbacks
def delete_version(s: Services, request: Any):
    """Delete one stored version, by scrapyd's rule (its delversion.json): refused (409)
    while a job that is running or waiting to run uses it; deleting a project's last
    version deletes the project. The project's current version is then the last left."""
    name = arg(request, "project")
    s.projects.get(name)  # 404 for an unknown project before looking for the version
    version = s.projects.get_version(name, arg(request, "version")).name  # 1.0 is 1_0
    yield s.projects.delete_version(name, version)
    left = list_versions_of(s, name)
    current = next((v["name"] for v in left if v["current"]), None)
    return {"project": name, "version": version, "current": current}


@inlineCallbacks
def remove_project(s: Services, request: Any):
    yield s.projects.remove(arg(request, "name"))
    return {}


def register(router: Router) -> None:
    """Add this module's routes to ``router``."""
    router.route("/push-project.json", "POST")(push_project)
    router.route("/list-projects.json", "GET")(list_projects)
    router.route("/list-spiders.json", "GET")(list_spiders)
    router.route("/list-versions.json", "GET")(list_versions)
    router.route("/delete-version.json", "POST")(delete_version)
    router.route("/remove-project.json", "POST")(remove_project)
