"""Gerapy 0.9.13 (PyPI), unchanged, pointed at crawld's scrapyd listener through its own
REST API (what its web pages call): a client with the listener's address, user and
password, its status, projects and spiders, a spider started, the job listed until
finished, its log, a running job canceled.

Gerapy pins Django 2.2 and old friends, so it runs from a virtualenv of its own made
once under the test cache (as ScrapydWeb's, tests/integration/scrapyd.tool_venv), in a
workspace made with ``gerapy init``, ``migrate`` and ``initadmin`` (admin/admin)."""
from __future__ import annotations

import subprocess
from typing import Any

import requests

from tests.conftest import wait_for
from tests.integration.scrapyd import (PASSWORD, USER, free_port, scrapyd_daemon,
                                      stop_process, tool_venv)

#: Gerapy 0.9.13 and every package it resolved to on Python 3.11, pinned
REQUIREMENTS = ['aiohappyeyeballs==2.7.1', 'aiohttp==3.14.5', 'aiosignal==1.4.0',
                'appdirs==1.4.4', 'APScheduler==3.7.0', 'attrs==26.1.0',
                'Automat==25.4.16', 'backports.zstd==1.8.0', 'beautifulsoup4==4.15.0',
                'brotli==1.2.1', 'certifi==2026.10.19.post1', 'cffi==2.1.1',
                'charset-normalizer==3.5.3', 'constantly==23.10.4',
                'cryptography==50.0.2', 'cssselect==1.6.0', 'defusedxml==0.7.1',
                'Django==2.2.28', 'django-apscheduler==0.6.0',
                'django-cors-headers==3.7.0', 'djangorestframework==3.13.1',
                'dnspython==2.9.2', 'filelock==4.3.1', 'frozenlist==1.8.0',
                'furl==2.1.4', 'gerapy==0.9.13', 'gevent==26.9.0', 'greenlet==3.5.6',
                'hyperlink==21.0.0', 'idna==3.20', 'importlib_metadata==10.2.0',
                'Incremental==24.11.0', 'itemadapter==0.13.1', 'itemloaders==1.5.0',
                'Jinja2==3.1.6', 'jmespath==1.1.0', 'lazy-importer==0.1.0',
                'lxml==6.1.3', 'MarkupSafe==3.0.4', 'multidict==7.2.1',
                'orderedmultidict==1.0.2', 'packaging==26.4', 'parsel==1.12.1',
                'platformdirs==4.14.8', 'propcache==0.5.4', 'Protego==0.7.0',
                'pycparser==3.12', 'PyDispatcher==2.0.7', 'pyee==11.1.1',
                'pymongo==4.20.1', 'PyMySQL==1.2.4', 'pyOpenSSL==26.4.0',
                'pyppeteer==2.0.0', 'pyquery==2.1.0', 'python-scrapyd-api==2.1.2',
                'pytz==2026.6', 'queuelib==1.10.0', 'redis==8.1.0', 'requests==2.34.2',
                'requests-file==3.0.1', 'Scrapy==2.19.0', 'scrapy-redis==0.9.1',
                'scrapy-splash==0.11.1', 'service-identity==26.1.0', 'six==1.17.0',
                'soupsieve==4.1.3', 'sqlparse==0.6.1', 'tldextract==5.4.0',
                'tqdm==4.70.1', 'Twisted==26.10.0', 'typing_extensions==4.16.0',
                'tzlocal==2.1', 'uberegg==0.1.1', 'urllib3==1.26.20', 'w3lib==2.5.0',
                'websocket==0.2.1', 'websockets==10.4', 'yarl==1.25.1', 'zipp==4.1.2',
                'zope.event==6.2', 'zope.interface==8.7']


def test_gerapy_drives_the_listener(tmp_path: Any) -> None:
    venv = tool_venv("gerapy-0.9.13", REQUIREMENTS)
    gerapy = str(venv / "bin" / "gerapy")
    d = scrapyd_daemon(tmp_path)
    server = None
    try:
        d.push()
        for argv, cwd in (([gerapy, "init"], tmp_path),
                          ([gerapy, "migrate"], tmp_path / "gerapy"),
                          ([gerapy, "initadmin"], tmp_path / "gerapy")):
            done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, (argv, done.stdout, done.stderr)
        port = free_port()
        out = open(tmp_path / "gerapy.log", "wb")
        server = subprocess.Popen([gerapy, "runserver", f"127.0.0.1:{port}"],
                                  cwd=tmp_path / "gerapy", stdout=out,
                                  stderr=subprocess.STDOUT)
        out.close()
        base = f"http://127.0.0.1:{port}"

        def token() -> Any:
            assert server.poll() is None, (tmp_path / "gerapy.log").read_text()[-3000:]
            try:
                r = requests.post(base + "/api/user/auth", timeout=10,
                                  data={"username": "admin", "password": "admin"})
            except requests.ConnectionError:
                return None
            return r.json().get("token") if r.ok else None
        headers = {"Authorization": f"Token {wait_for(token, 60, what='Gerapy to answer')}"}

        def api(path: str) -> Any:
            r = requests.get(base + path, headers=headers, timeout=60)
            assert r.status_code == 200, (path, r.status_code, r.text[-2000:])
            return r.json()
        node = int(d.scrapyd_url.rsplit(":", 1)[1])
        made = requests.post(base + "/api/client/create", headers=headers, timeout=60, json={
            "name": "crawld", "ip": "127.0.0.1", "port": node, "auth": True,
            "username": USER, "password": PASSWORD}).json()
        client = f"/api/client/{made['id']}"
        assert api(client + "/status") == {"result": "1"}
        assert api(client + "/projects") == ["demo"]
        assert {"name": "ok", "id": 4} in api(client + "/project/demo/spiders")

        job = api(client + "/project/demo/spider/ok")["job"]
        listed = wait_for(lambda: [j for j in api(client + "/project/demo/jobs")
                                   if j["id"] == job and j["status"] == "finished"],
                          60, what="Gerapy to list the job finished")
        assert listed[0]["log_url"] == f"/logs/demo/ok/{job}.log"
        log = requests.get(base + f"{client}/project/demo/spider/ok/job/{job}/log",
                           headers=headers, timeout=60)
        assert log.status_code == 200 and "Spider closed (finished)" in log.text

        sleeper = api(client + "/project/demo/spider/sleep")["job"]
        wait_for(lambda: d.sd_get("/status.json", job=sleeper)["currstate"] == "running",
                 60, what="the sleeper to run")
        assert api(f"{client}/project/demo/job/{sleeper}/cancel") == "running"
        d.wait_status(sleeper, "CANCELED")
    finally:
        stop_process(server)
        d.stop()
