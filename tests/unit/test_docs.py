"""The docs follow the code: OpenAPI matches the live routes, the config docs the options."""
from __future__ import annotations

import configparser
import re
from pathlib import Path

import yaml

from crawld import config
from crawld.api import ALL_METHODS, ROUTES, Api

ROOT = Path(__file__).resolve().parents[2]


def openapi_path(rule: str) -> str:
    """Klein's ``/get-log/<string:anything>/<string:filename>`` in OpenAPI's form."""
    names = {"anything": "any", "filename": "logfile"}
    return re.sub(r"<(?:\w+:)?(\w+)>", lambda m: "{" + names.get(m.group(1), m.group(1)) + "}",
                  rule)


def test_every_klein_rule_is_a_registered_endpoint():
    rules = {rule.rule for rule in Api.app.url_map.iter_rules()}
    assert rules == set(ROUTES)


def test_openapi_lists_exactly_the_live_routes_and_methods():
    spec = yaml.safe_load((ROOT / "docs" / "openapi.yaml").read_text())
    documented = {(path, method) for path, item in spec["paths"].items()
                  for method in item if method.upper() in ALL_METHODS}
    live = {(openapi_path(path), method.lower()) for path, methods in ROUTES.items()
            for method in methods}
    assert documented == live
    assert spec["openapi"].startswith("3.1")


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
