# From scrapyd 1.6.0 (https://github.com/scrapy/scrapyd, integration_tests/test_website.py),
# Copyright (c) Scrapy developers, BSD 3-Clause licence: see ../LICENSE.
import pytest

from integration_tests import req


def test_root():
    response = req("get", "/")

    assert '"/jobs"' in response.text
    assert '"/logs/"' in response.text


@pytest.mark.parametrize(("path", "content"), [("jobs", "Cancel"), ("logs", "Last modified")])
def test_paths(path, content):
    response = req("get", f"/{path}")

    assert content in response.text


def test_base_path():
    response = req("get", "/", headers={"X-Forwarded-Prefix": "/path/to"})

    assert '"/path/to/jobs"' in response.text
    assert '"/path/to/logs/"' in response.text
