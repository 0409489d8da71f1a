"""scrapyd 1.6.0's own integration tests (31) pass against crawld's scrapyd listener.

They are vendored in scrapyd_contract/ (see its README): copied to a temporary
directory with only their URL changed to the listener's, and run with pytest in a
subprocess, against a fresh crawld whose operator user is scrapyd's test user.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

from tests.integration.scrapyd import scrapyd_daemon

HERE = os.path.join(os.path.dirname(__file__), "scrapyd_contract")
SCRAPYD_URL = "http://127.0.0.1:6800"


def test_scrapyds_31_integration_tests_pass_against_the_listener(tmp_path):
    daemon = scrapyd_daemon(tmp_path)
    try:
        suite = tmp_path / "suite"
        shutil.copytree(HERE, suite, ignore=shutil.ignore_patterns("conftest.py",
                                                                   "__pycache__"))
        changed = 0
        for path in (suite / "integration_tests").glob("*.py"):
            text = path.read_text()
            changed += text.count(SCRAPYD_URL)
            path.write_text(text.replace(SCRAPYD_URL, daemon.scrapyd_url))
        assert changed == 3, "scrapyd's tests name their URL three times"
        run = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
             "-p", "no:randomly", "integration_tests"],
            cwd=suite, capture_output=True, text=True, timeout=600)
        summary = run.stdout.strip().splitlines()[-1] if run.stdout.strip() else ""
        assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
        assert re.fullmatch(r"31 passed in [0-9.]+s", summary), summary
    finally:
        daemon.stop()
