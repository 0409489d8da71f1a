"""The dashboard's side of the HTTP layer without a socket: its files (served without
credentials, cached by ETag, gzipped, a strict CSP, no CORS), the session routes
(login, logout, whoami) and 401s without challenges for the page."""
from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import pytest

from crawld.http import routes_dashboard
from crawld.http.app import build_app
from tests.unit.auth_env import PASSWORD, READER_PW, make_env
from tests.unit.fakes import result
from tests.unit.http_fakes import services, stub, with_web
from tests.unit.test_hot_path import raw_answer

URL = "http://127.0.0.1"
FOLDER = Path(routes_dashboard.__file__).parent / "dashboard"
PAGE = {"X-Crawld-Client": "dashboard"}


def call(client, method, path, **kw):
    response = result(client.request(method, URL + path, **kw))
    return response, result(response.content())


@pytest.fixture
def env(tmp_path):
    return make_env(tmp_path)


@pytest.fixture
def locked(env):
    """The app with authentication required (real Authenticator, keys and users)."""
    return stub(services(authenticator=env.auth))


def test_the_page_and_its_files_need_no_credentials(locked):
    for path, kind in (("/", "text/html; charset=utf-8"),
                       ("/dashboard/app.js", "text/javascript; charset=utf-8"),
                       ("/dashboard/app.css", "text/css; charset=utf-8"),
                       ("/dashboard/icon.svg", "image/svg+xml")):
        response, body = call(locked, "GET", path)
        assert response.code == 200, path
        assert response.headers.getRawHeaders("content-type") == [kind]
        name = "index.html" if path == "/" else path.rsplit("/", 1)[1]
        assert body == (FOLDER / name).read_bytes()
    assert call(locked, "GET", "/status.json")[0].code == 401, "data still needs them"


def test_every_file_of_the_folder_is_served_and_nothing_else(locked):
    names = {p.name for p in FOLDER.iterdir()}
    assert {"index.html", "app.js", "app.css"} <= names
    assert set(routes_dashboard.dashboard_files()) == names
    for name in ("nope.js", "index.html", "..%2Fapp.py", "%2E%2E"):
        response, body = call(locked, "GET", f"/dashboard/{name}")
        assert response.code == 404, name
        assert json.loads(body)["status"] == "error"
    assert call(locked, "GET", "/dashboard/a/b.js")[0].code == 404


def test_headers_strict_csp_no_cors_even_for_a_listed_origin(env):
    client = stub(with_web(services(authenticator=env.auth),
                           allowed_origins=frozenset({"https://dash.example"})))
    for path in ("/", "/dashboard/app.js"):
        response, _ = call(client, "GET", path, headers={"Origin": "https://dash.example"})
        headers = response.headers
        csp = headers.getRawHeaders("content-security-policy")[0]
        assert "default-src 'self'" in csp and "script-src 'self'" in csp
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert "frame-ancestors 'none'" in csp
        assert headers.getRawHeaders("x-content-type-options") == ["nosniff"]
        assert headers.getRawHeaders("cache-control") == ["no-cache"]
        assert not [n for n, _ in headers.getAllRawHeaders()
                    if n.lower().startswith(b"access-control-")], path
    # the API keeps its CORS for the listed origin
    response, _ = call(client, "GET", "/status.json",
                       headers={"Origin": "https://dash.example",
                                "Authorization": f"Bearer {env.reader_key}"})
    assert response.headers.getRawHeaders("access-control-allow-origin") == [
        "https://dash.example"]


def raw(env, path, method="GET", **headers):
    """(code, headers, body) as a real Site sends them: exactly the headers given
    (treq would add its own Accept-Encoding)."""
    data = raw_answer(build_app(services(authenticator=env.auth)), method, path, headers)
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    found = dict(line.decode().split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in found.items()}, body


def test_strong_etags_answer_304_and_gzip_has_its_own(env):
    source = (FOLDER / "app.js").read_bytes()
    code, headers, body = raw(env, "/dashboard/app.js")
    assert code == 200 and body == source and "content-encoding" not in headers
    assert headers["content-length"] == str(len(source))
    tag = headers["etag"]
    assert re.fullmatch(r'"[0-9a-f]{32}"', tag)
    code, headers, body = raw(env, "/dashboard/app.js", **{"If-None-Match": tag})
    assert code == 304 and body == b""
    code, headers, zipped = raw(env, "/dashboard/app.js", **{"Accept-Encoding": "br, gzip;q=0.8"})
    assert headers["content-encoding"] == "gzip" and headers["vary"] == "Accept-Encoding"
    assert gzip.decompress(zipped) == source and len(zipped) < len(source) / 2
    gz_tag = headers["etag"]
    assert gz_tag != tag
    assert raw(env, "/dashboard/app.js", **{"Accept-Encoding": "gzip",
                                            "If-None-Match": tag})[0] == 200
    assert raw(env, "/dashboard/app.js", **{"Accept-Encoding": "gzip",
                                            "If-None-Match": f'"x", {gz_tag}'})[0] == 304
    code, headers, body = raw(env, "/dashboard/app.js", **{"Accept-Encoding": "gzip;q=0"})
    assert body == source and "content-encoding" not in headers
    code, headers, body = raw(env, "/", "HEAD")
    assert code == 200 and body == b"" and headers["content-type"].startswith("text/html")
    assert raw(env, "/dashboard/app.js", "POST")[0] == 405


def test_the_page_has_no_inline_script_and_loads_nothing_from_elsewhere():
    for path in FOLDER.iterdir():
        text = path.read_text("utf-8")
        assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", text), path.name
        if path.suffix == ".html":
            assert not re.search(r"<script(?![^>]*\bsrc=)", text), "inline script"
            assert not re.search(r"\son\w+=", text), "inline handler"
            assert "style=" not in text
        if path.suffix == ".js":
            assert "innerHTML" not in text and "eval(" not in text, path.name


# -- 401 without challenges for the page --------------------------------------------
def test_the_page_gets_its_401_without_challenges(locked):
    plain, _ = call(locked, "GET", "/list-jobs.json?status=ACTIVE")
    assert plain.code == 401 and len(plain.headers.getRawHeaders("www-authenticate")) == 2
    for headers in (PAGE, {**PAGE, "Authorization": "Bearer cwk_wrong"},
                    {**PAGE, "Authorization": "Basic YWxpY2U6bm9wZQ=="}):
        quiet, body = call(locked, "GET", "/list-jobs.json?status=ACTIVE", headers=headers)
        assert quiet.code == 401 and json.loads(body)["status"] == "error"
        assert not quiet.headers.hasHeader("www-authenticate"), headers


# -- login, logout, whoami ----------------------------------------------------------
def test_login_then_bearer_then_logout(locked, env):
    response, body = call(locked, "POST", "/login.json", headers=PAGE,
                          data={"user": "alice", "password": PASSWORD})
    answer = json.loads(body)
    assert response.code == 200 and answer["name"] == "alice" and answer["role"] == "operator"
    assert answer["expires-in"] == env.auth.session_ttl
    bearer = {"Authorization": f"Bearer {answer['token']}"}
    assert call(locked, "GET", "/list-jobs.json?status=ACTIVE", headers=bearer)[0].code == 200
    who = json.loads(call(locked, "GET", "/whoami.json", headers=bearer)[1])
    assert (who["auth"], who["name"], who["role"], who["kind"]) == (
        "required", "alice", "operator", "session")
    assert json.loads(call(locked, "POST", "/logout.json", headers=bearer)[1])["ended"]
    assert call(locked, "GET", "/list-jobs.json?status=ACTIVE", headers=bearer)[0].code == 401
    assert not json.loads(call(locked, "POST", "/logout.json", headers=bearer)[1])["ended"]


def test_a_reader_session_reads_and_is_refused_changes(locked):
    body = call(locked, "POST", "/login.json", data={"user": "bob", "password": READER_PW})[1]
    bearer = {"Authorization": f"Bearer {json.loads(body)['token']}"}
    assert call(locked, "GET", "/status.json", headers=bearer)[0].code == 200
    refused, text = call(locked, "POST", "/schedule-job.json", headers=bearer,
                         data={"project": "demo", "spider": "ok", "when": "now"})
    assert refused.code == 403 and "operator role" in json.loads(text)["msg"]
    assert call(locked, "POST", "/logout.json", headers=bearer)[0].code == 200


@pytest.mark.parametrize("data, query, code, words", [
    ({"user": "alice", "password": "wrong"}, "", 401, "invalid credentials"),
    ({"user": "alice"}, "", 400, "'password'"),
    ({"password": PASSWORD}, "", 400, "'user'"),
    ({"user": "alice"}, f"?password={PASSWORD}", 400, "never in the URL"),
])
def test_login_refusals(locked, data, query, code, words):
    response, body = call(locked, "POST", "/login.json" + query, data=data, headers=PAGE)
    assert response.code == code and words in json.loads(body)["msg"]
    assert not response.headers.hasHeader("www-authenticate")


def test_login_and_logout_from_another_site_are_refused(locked):
    for path in ("/login.json", "/logout.json"):
        response, body = call(locked, "POST", path, data={"user": "alice",
                                                         "password": PASSWORD},
                              headers={"Origin": "http://evil.example",
                                       "Sec-Fetch-Site": "cross-site"})
        assert response.code == 403, path


def test_whoami_without_credentials_or_auth(locked, env):
    who = json.loads(call(locked, "GET", "/whoami.json")[1])
    assert who["auth"] == "required" and who["name"] is who["role"] is who["kind"] is None
    key = json.loads(call(locked, "GET", "/whoami.json",
                          headers={"Authorization": f"Bearer {env.reader_key}"})[1])
    assert (key["role"], key["kind"], key["name"]) == ("reader", "key", "ci")
    wrong, _ = call(locked, "GET", "/whoami.json",
                    headers={**PAGE, "Authorization": "Bearer cwk_nope"})
    assert wrong.code == 401 and not wrong.headers.hasHeader("www-authenticate")
    open_ = stub(services())
    who = json.loads(call(open_, "GET", "/whoami.json")[1])
    assert (who["auth"], who["role"], who["kind"]) == ("none", "operator", "none")
    response, body = call(open_, "POST", "/login.json",
                          data={"user": "alice", "password": PASSWORD})
    assert response.code == 400 and "auth = none" in json.loads(body)["msg"]


def test_the_page_asks_for_every_module_at_once():
    """No waterfall of imports: index.html names every module (a modulepreload, or
    api.js's own script, which asks whoami.json while the others load)."""
    html = (FOLDER / "index.html").read_text("utf-8")
    named = set(re.findall(r'href="dashboard/(\w+\.js)"', html))
    named |= set(re.findall(r'<script type="module"[^>]* src="dashboard/(\w+\.js)"', html))
    modules = {p.name for p in FOLDER.glob("*.js")}
    assert named == modules
    imported = {m for p in FOLDER.glob("*.js")
                for m in re.findall(r'from "\./(\w+\.js)"', p.read_text("utf-8"))}
    assert imported <= modules, "an import of a file that does not exist"


def test_setup_py_ships_every_file_of_the_dashboard():
    import fnmatch
    setup = (FOLDER.parents[3] / "setup.py").read_text()
    globs = re.findall(r'"(dashboard/\*\.\w+)"', setup)
    assert globs
    for path in FOLDER.iterdir():
        assert any(fnmatch.fnmatch(f"dashboard/{path.name}", g) for g in globs), path.name


def gated(env):
    """The daemon's site as service.py makes it: the app and its header gate, which
    decides a request with a body on its headers (the real channel, no socket)."""
    from twisted.internet.task import Clock
    from crawld.http.app import app_resource, build_router
    from crawld.http.helpers import header_gate
    from crawld.server import make_site
    from tests.unit.test_hot_path import connect
    built = services(authenticator=env.auth)
    router = build_router(built)
    site = make_site(app_resource(router), 1 << 20, gate=header_gate(built, router.is_public))
    return connect(site, Clock())


def post(path: str, body: bytes, *headers: bytes) -> bytes:
    return (b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%s"
            b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n\r\n%s"
            % (path.encode(), b"".join(h + b"\r\n" for h in headers), len(body), body))


def test_the_header_gate_lets_login_and_logout_in_without_credentials(env):
    body = f"user=alice&password={PASSWORD.replace(' ', '+')}".encode()
    channel, transport = gated(env)
    channel.dataReceived(post("/login.json", body))
    answer = transport.value()
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
    token = json.loads(answer.partition(b"\r\n\r\n")[2].split(b"\r\n")[1])["token"]
    channel, transport = gated(env)
    channel.dataReceived(post("/logout.json", b"", b"Authorization: Bearer " + token.encode()))
    assert transport.value().startswith(b"HTTP/1.1 200 ")
    # every other body still needs credentials on its headers, and the page's 401 is quiet
    for extra in ((), (b"X-Crawld-Client: dashboard",)):
        channel, transport = gated(env)
        channel.dataReceived(post("/schedule-job.json", b"project=demo", *extra))
        answer = transport.value()
        assert answer.startswith(b"HTTP/1.1 401 ") and transport.disconnecting
        assert (b"WWW-Authenticate" in answer) == (not extra), answer[:400]
