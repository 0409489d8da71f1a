"""Authentication on a real daemon: keys and users made with the CLI, every route closed.

The credentials are created the way an operator does (``crawld keys add``, ``crawld
users add``) in the daemon's data directory; the daemon picks them up at start, or
within a second while it runs.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from typing import Any

import requests
import yaml
from requests.auth import HTTPBasicAuth, HTTPDigestAuth

from tests.conftest import wait_for
from tests.integration import project
from tests.integration.test_scrapy_do_client import cl

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ZERO_ID = "00000000-0000-0000-0000-000000000000"


def crawld_cli(data_dir: str, *args: str, stdin: str = "") -> str:
    r = subprocess.run([sys.executable, "-m", "crawld", args[0], "--data-dir", data_dir,
                        *args[1:]],
                       input=stdin, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, (args, r.stdout, r.stderr)
    return r.stdout


def add_key(d: Any, role: str, name: str) -> str:
    return crawld_cli(d.data_dir, "keys", "add", "--role", role, "--name", name).strip()


def openapi_requests(public: bool = False) -> list[tuple[str, str]]:
    """Every (method, concrete path) that docs/openapi.yaml documents as needing
    credentials (``public``: as served without them, ``security: [{}]``)."""
    with open(os.path.join(ROOT, "docs", "openapi.yaml")) as fh:
        spec = yaml.safe_load(fh)
    found = []
    for path, item in spec["paths"].items():
        concrete = re.sub(r"\{[^}]+\}", lambda m: ZERO_ID if "id" in m.group(0) else "x.out",
                          path)
        for method, operation in item.items():
            if (method.lower() in ("get", "post", "head", "put", "delete", "patch")
                    and (operation.get("security") == [{}]) == public):
                found.append((method.upper(), concrete))
    return found


def test_every_documented_route_needs_credentials(make_daemon: Any) -> None:
    d = make_daemon()
    os.makedirs(d.data_dir, exist_ok=True)
    operator = None
    d.start()
    operator = add_key(d, "operator", "ci")
    # the key was added while the daemon ran without auth: still off until a restart
    assert d.get("/status.json").status_code == 200
    d.stop()
    d.start()
    routes = openapi_requests()
    assert len(routes) >= 20
    for method, path in routes:
        r = requests.request(method, d.url + path, timeout=30)
        assert r.status_code == 401, (method, path, r.status_code, r.text)
        assert r.headers["Content-Type"] == "application/json"
        challenges = r.headers["WWW-Authenticate"]
        assert "Digest " in challenges and "Basic " in challenges, challenges
    r = requests.get(d.url + "/status.json", headers={"Authorization": f"Bearer {operator}"},
                     timeout=30)
    assert r.status_code == 200 and r.json()["status"] == "ok"
    # the dashboard's files, login, logout and whoami: served without credentials
    public = {path for _, path in openapi_requests(public=True)}
    assert public == {"/", "/dashboard/x.out", "/login.json", "/logout.json",
                                    "/whoami.json"}
    for method, path, code in (("GET", "/", 200), ("GET", "/dashboard/app.js", 200),
                               ("GET", "/dashboard/x.out", 404), ("GET", "/whoami.json", 200),
                               ("POST", "/logout.json", 200), ("POST", "/login.json", 400)):
        r = requests.request(method, d.url + path, timeout=30)
        assert r.status_code == code, (method, path, r.text)
    assert requests.get(d.url + "/whoami.json", timeout=30).json()["role"] is None


def test_keys_roles_and_every_way_of_giving_a_key(make_daemon: Any) -> None:
    d = make_daemon()
    os.makedirs(d.data_dir, exist_ok=True)
    reader = crawld_cli(d.data_dir, "keys", "add", "--role", "reader").strip()
    d.start()
    operator = add_key(d, "operator", "ops")  # added while it runs: works within a second

    def as_operator() -> bool:
        return requests.get(d.url + "/status.json", headers={"X-Api-Key": operator},
                            timeout=30).status_code == 200
    # slow polls: each refusal counts towards the lockout of this client (10 a minute)
    wait_for(as_operator, 10, interval=0.4, what="the new key to be picked up")
    for how in ({"headers": {"Authorization": f"Bearer {reader}"}},
                {"headers": {"X-Api-Key": reader}}, {"params": {"key": reader}}):
        r = requests.get(d.url + "/list-projects.json", timeout=30, **how)
        assert r.status_code == 200, (how, r.text)
    r = requests.post(d.url + "/schedule-job.json", headers={"X-Api-Key": reader},
                      data={"project": "demo", "spider": "ok", "when": "now"}, timeout=30)
    assert r.status_code == 403 and "operator" in r.json()["msg"]
    r = requests.post(d.url + "/push-project.json", headers={"X-Api-Key": operator},
                      files={"archive": ("p.zip", project.build("demo"))}, timeout=120)
    assert r.status_code == 200, r.text
    listed = crawld_cli(d.data_dir, "keys", "list")
    assert "ops" in listed and operator not in listed and reader not in listed
    crawld_cli(d.data_dir, "keys", "revoke", "ops")
    wait_for(lambda: not as_operator(), 10, interval=0.4,
             what="the revoked key to stop working")
    log = d.log()
    for secret in (reader, operator):
        assert secret not in log


def test_users_with_basic_digest_and_scrapy_do_cl(make_daemon: Any, tmp_path: Any) -> None:
    d = make_daemon()
    os.makedirs(d.data_dir, exist_ok=True)
    crawld_cli(d.data_dir, "users", "add", "alice", "--role", "operator",
               "--password-stdin", stdin="s3cret-pass\n")
    d.start()
    for auth in (HTTPBasicAuth("alice", "s3cret-pass"), HTTPDigestAuth("alice", "s3cret-pass")):
        assert requests.get(d.url + "/status.json", auth=auth, timeout=30).status_code == 200
    wrong = requests.get(d.url + "/status.json", auth=HTTPDigestAuth("alice", "nope"),
                         timeout=30)
    assert wrong.status_code == 401
    src = project.write_tree(str(tmp_path / "src"))
    creds = ("--username", "alice", "--password", "s3cret-pass")
    assert "demo" in cl(d, *creds, "push-project", cwd=src)
    out = cl(d, *creds, "schedule-job", "--project", "demo", "--spider", "ok")
    job_id = out.split()[-1]
    d.session.auth = HTTPDigestAuth("alice", "s3cret-pass")
    d.wait_status(job_id, "SUCCESSFUL")
    assert "CRAWLD-TEST" in cl(d, *creds, "get-log", "--job-id", job_id, "--log-type", "out")
    refused = cl(d, "--username", "alice", "--password", "wrong", "status", ok=False)
    assert "[!]" in refused or "401" in refused
    assert "s3cret-pass" not in d.log()


def test_repeated_failures_get_429_then_recover_nothing_secret_logged(
        make_daemon: Any) -> None:
    d = make_daemon()
    os.makedirs(d.data_dir, exist_ok=True)
    good = crawld_cli(d.data_dir, "keys", "add", "--role", "reader").strip()
    d.start()
    codes = [requests.get(d.url + "/status.json", headers={"X-Api-Key": f"cwk_bad{i}"},
                          timeout=30).status_code for i in range(12)]
    assert codes[:10] == [401] * 10 and codes[10:] == [429, 429], codes
    r = requests.get(d.url + "/status.json", headers={"X-Api-Key": "cwk_bad12"}, timeout=30)
    assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0
    # a valid key is not locked out by others' failures (issue 10)
    r = requests.get(d.url + "/status.json", headers={"X-Api-Key": good}, timeout=30)
    assert r.status_code == 200
    assert "cwk_bad" not in d.log()


def test_refuses_to_listen_beyond_loopback_without_auth(tmp_path: Any) -> None:
    # 192.0.2.1 (TEST-NET-1) is not on this machine: even a broken check could not expose
    # anything, the bind would fail. The refusal must come first, with the fix in it.
    config = tmp_path / "crawld.ini"
    config.write_text("[web]\nlisten = 192.0.2.1:7654\n")
    r = subprocess.run([sys.executable, "-m", "crawld", "serve", "--config", str(config),
                        "--data-dir", str(tmp_path / "data")], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2, r.stderr
    assert "refusing to listen on 192.0.2.1" in r.stderr and "auth = none" in r.stderr
