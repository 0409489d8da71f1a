"""The docs follow the code: OpenAPI matches the live routes, the config docs the options."""
from __future__ import annotations

import configparser
import json
import os
import re
from pathlib import Path

import yaml
from openapi_spec_validator import validate
from treq.testing import StubTreq

from crawld import config
from crawld.api import ALL_METHODS, ROUTES, Api, openapi_json
from tests.unit.fakes import result

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "docs" / "openapi.yaml"


def openapi_path(rule: str) -> str:
    """Klein's ``/get-log/<string:anything>/<string:filename>`` in OpenAPI's form."""
    names = {"anything": "any", "filename": "logfile"}
    return re.sub(r"<(?:\w+:)?(\w+)>", lambda m: "{" + names.get(m.group(1), m.group(1)) + "}",
                  rule)


def test_every_klein_rule_is_a_registered_endpoint():
    rules = {rule.rule for rule in Api.app.url_map.iter_rules()}
    assert rules == set(ROUTES)


def test_openapi_lists_exactly_the_live_routes_and_methods():
    spec = yaml.safe_load(SPEC.read_text())
    documented = {(path, method) for path, item in spec["paths"].items()
                  for method in item if method.upper() in ALL_METHODS}
    live = {(openapi_path(path), method.lower()) for path, methods in ROUTES.items()
            for method in methods}
    assert documented == live
    assert spec["openapi"].startswith("3.1")


def test_openapi_is_a_valid_3_1_document_shipped_in_the_package():
    # docs/openapi.yaml links to the file in the package, which setup.py installs
    assert SPEC.is_symlink() and not os.path.isabs(os.readlink(SPEC))
    assert SPEC.resolve() == ROOT / "daemon" / "crawld" / "openapi.yaml"
    spec = yaml.safe_load(SPEC.read_text())
    assert spec["openapi"] == "3.1.0"
    validate(spec)  # raises on any violation of the OpenAPI 3.1 schema
    setup = (ROOT / "setup.py").read_text()
    assert re.search(r"package_data=\{\"crawld\": \[[^]]*\"openapi\.yaml\"", setup)


def test_every_operation_documents_the_answers_every_route_can_give():
    spec = yaml.safe_load(SPEC.read_text())
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            codes = set(operation["responses"])
            assert {"200", "401", "403", "405", "429", "500"} <= codes, (path, method)


def test_openapi_json_is_the_yaml_spec_served_from_the_package():
    api = Api(None, None, None, None, None, "", max_body=1 << 20, max_archive=1 << 20)
    stub = StubTreq(api.resource())
    response = result(stub.get("http://localhost/openapi.json"))
    body = result(response.content())
    assert response.code == 200
    assert response.headers.getRawHeaders("content-type") == ["application/json"]
    assert json.loads(body) == yaml.safe_load(SPEC.read_text())
    assert openapi_json() is openapi_json()  # parsed once
    response = result(stub.post("http://localhost/openapi.json"))
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
