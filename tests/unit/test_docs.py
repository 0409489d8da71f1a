"""The docs follow the code: OpenAPI matches the routes the app serves, the config docs
the options."""
from __future__ import annotations

import configparser
import json
import os
import re
from pathlib import Path

import yaml
from openapi_spec_validator import validate

from crawld import config
from crawld.http.app import build_router
from crawld.http.helpers import Router
from crawld.http.routes_meta import openapi_json
from tests.unit.fakes import result
from tests.unit.http_fakes import services, stub, stub_resource

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "docs" / "openapi.yaml"
#: The methods a route may be documented for (HEAD comes with GET, OPTIONS is CORS's).
METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH")


def openapi_path(rule: str) -> str:
    """Klein's ``/get-log/<string:anything>/<string:filename>`` in OpenAPI's form."""
    names = {"anything": "any", "filename": "logfile"}
    return re.sub(r"<(?:\w+:)?(\w+)>", lambda m: "{" + names.get(m.group(1), m.group(1)) + "}",
                  rule)


def served(router: Router) -> set[tuple[str, str]]:
    """(OpenAPI path, method) of every route of ``router``'s app, found by walking its
    Klein url_map and asking each path with each method: what answers other than 405
    is served."""
    client = stub_resource(router.klein.resource(), router.services.web.max_body)
    found = set()
    for rule in router.klein.url_map.iter_rules():
        concrete = re.sub(r"<(?:\w+:)?\w+>", "x", rule.rule)
        answered = {method for method in METHODS
                    if result(client.request(method, "http://localhost" + concrete)).code
                    != 405}
        assert answered, f"{rule.rule} answers no method"
        found |= {(openapi_path(rule.rule), method.lower()) for method in answered}
    return found


def documented() -> set[tuple[str, str]]:
    """(path, method) of every operation in docs/openapi.yaml."""
    spec = yaml.safe_load(SPEC.read_text())
    assert spec["openapi"].startswith("3.1")
    return {(path, method) for path, item in spec["paths"].items()
            for method in item if method.upper() in METHODS}


def test_openapi_lists_exactly_the_routes_the_app_serves():
    live = served(build_router(services()))
    assert len(live) >= 20
    assert documented() == live


def test_a_route_added_without_docs_fails_the_comparison():
    router = build_router(services())
    router.route("/undocumented.json", "POST")(lambda s, request: {})
    assert documented() ^ served(router) == {("/undocumented.json", "post")}


def test_openapi_is_a_valid_3_1_document_shipped_in_the_package():
    # docs/openapi.yaml links to the file in the package, which setup.py installs
    assert SPEC.is_symlink() and not os.path.isabs(os.readlink(SPEC))
    assert SPEC.resolve() == ROOT / "daemon" / "crawld" / "openapi.yaml"
    spec = yaml.safe_load(SPEC.read_text())
    assert spec["openapi"] == "3.1.0"
    validate(spec)  # raises on any violation of the OpenAPI 3.1 schema
    setup = (ROOT / "setup.py").read_text()
    assert re.search(r"package_data=\{\"crawld\": \[[^]]*\"openapi\.yaml\"", setup)


#: Served without credentials and never looking at any: no 401, 429 or 503 (the
#: dashboard's files; login, logout and whoami check credentials and list them).
NO_CREDENTIALS = {"/", "/dashboard/{name}", "/logout.json"}


def test_every_operation_documents_the_answers_every_route_can_give():
    spec = yaml.safe_load(SPEC.read_text())
    public = {openapi_path(rule) for rule in build_router(services()).public}
    assert NO_CREDENTIALS <= public
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            codes = set(operation["responses"])
            if path in NO_CREDENTIALS:
                assert {"200", "403", "405", "500"} <= codes, (path, method)
                assert operation["security"] == [{}], (path, method)
                continue
            assert {"200", "401", "403", "405", "429", "500", "503"} <= codes, (path, method)
            if path in public:
                assert operation["security"] == [{}], (path, method)


def test_openapi_json_is_the_yaml_spec_served_from_the_package():
    client = stub(services())
    response = result(client.get("http://localhost/openapi.json"))
    body = result(response.content())
    assert response.code == 200
    assert response.headers.getRawHeaders("content-type") == ["application/json"]
    assert json.loads(body) == yaml.safe_load(SPEC.read_text())
    assert openapi_json() is openapi_json()  # parsed once
    response = result(client.post("http://localhost/openapi.json"))
    assert response.code == 405


def test_config_example_sets_every_option_to_its_default():
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(ROOT / "config.example.ini")
    present = {(s, o) for s in parser.sections() for o in parser[s]}
    commented = set(re.findall(r"^#\s*([a-z-]+)\s*=", (ROOT / "config.example.ini").read_text(),
                               re.M))
    for section, option in config.OPTIONS:
        assert (section, option) in present or option in commented, (section, option)
    assert config.load(str(ROOT / "config.example.ini")) == config.Settings(), \
        "the example's values are the defaults"


def test_configuration_reference_documents_every_option():
    doc = (ROOT / "docs" / "configuration.md").read_text()
    rows = set(re.findall(r"^\| `(\w+)` \| `([a-z-]+)` \|", doc, re.M))
    assert rows == set(config.OPTIONS)


def test_job_identifiers_in_openapi_are_crawlds_not_uuids():
    """A job's identifier matches model.JOB_ID_RE (scrapyd's ``jobid`` may name it):
    every schema of one says so; only webhook deliveries' identifiers are UUIDs."""
    from crawld.model import JOB_ID_RE
    spec = yaml.safe_load(SPEC.read_text())
    uuids, job_ids = [], 0

    def walk(node, where):
        nonlocal job_ids
        if isinstance(node, dict):
            if node.get("format") == "uuid":
                uuids.append(where)
            if node.get("pattern") == f"^{JOB_ID_RE.pattern}$":
                job_ids += 1
            for key, value in node.items():
                walk(value, f"{where}/{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{where}/{i}")
    walk(spec, "")
    assert uuids == ["/webhooks/jobEvent/post/parameters/1/schema",  # X-Crawld-Delivery
                     "/webhooks/jobEvent/post/requestBody/content/application/json/schema"
                     "/allOf/1/properties/delivery",
                     "/components/schemas/Delivery/properties/delivery"]
    assert job_ids >= 30
