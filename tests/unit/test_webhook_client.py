"""One webhook attempt (webhook_client) over a fake Agent on a task.Clock, webhook URLs
(hookurls) and the [webhooks] options."""
from __future__ import annotations

from typing import Any, Optional

import pytest
from twisted.internet import error
from twisted.internet.defer import Deferred, fail
from twisted.internet.task import Clock
from twisted.web.client import ResponseNeverReceived
from twisted.web.http_headers import Headers

from crawld import config
from crawld.errors import ConfigError
from crawld.hookurls import MAX_URL, check_url, redact
from crawld.webhook_client import AgentPoster, Outcome
from tests.unit.fakes import result


class FakeTransport:
    stopped = False

    def stopProducing(self) -> None:
        self.stopped = True


class FakeResponse:
    def __init__(self, code: int, phrase: bytes = b"", headers: Optional[dict] = None
                 ) -> None:
        self.code = code
        self.phrase = phrase
        self.headers = Headers({k: [v] for k, v in (headers or {}).items()})
        self.transport = FakeTransport()

    def deliverBody(self, protocol: Any) -> None:
        protocol.makeConnection(self.transport)


class FakeAgent:
    def __init__(self) -> None:
        self.requests: list[tuple] = []

    def request(self, method: bytes, uri: bytes, headers: Headers, body: Any) -> Deferred:
        d: Deferred = Deferred()
        written: list[bytes] = []

        class Consumer:
            def write(self, data: bytes) -> None:
                written.append(data)
        body.startProducing(Consumer())
        self.requests.append((method, uri, headers, b"".join(written), body.length, d))
        return d


def poster(timeout: float = 10) -> tuple[AgentPoster, FakeAgent, Clock]:
    clock, agent = Clock(), FakeAgent()
    return AgentPoster(clock, timeout, agent), agent, clock


def test_a_post_sends_the_body_and_headers_and_drops_the_answer_body():
    p, agent, _ = poster()
    d = p.post("https://h.example/x?t=1", b'{"a": 1}', {"X-Crawld-Event": "ended"})
    method, uri, headers, body, length, answer = agent.requests[0]
    assert (method, uri, body, length) == (b"POST", b"https://h.example/x?t=1",
                                           b'{"a": 1}', 8)
    assert headers.getRawHeaders(b"x-crawld-event") == [b"ended"]
    assert headers.getRawHeaders(b"user-agent")[0].startswith(b"crawld/")
    response = FakeResponse(200, b"OK")
    answer.callback(response)
    assert result(d) == Outcome(200)
    assert response.transport.stopped, "the answer's body is never read"


@pytest.mark.parametrize("code, phrase, headers, outcome", [
    (500, b"Internal Server Error", {}, Outcome(500, "HTTP 500 Internal Server Error")),
    (429, b"Too Many Requests", {b"Retry-After": b"30"},
     Outcome(429, "HTTP 429 Too Many Requests", 30.0)),
    (503, b"", {b"Retry-After": b"Wed, 21 Oct 2015 07:28:00 GMT"}, Outcome(503, "HTTP 503")),
    (301, b"Moved", {b"Location": b"http://elsewhere/"}, Outcome(301, "HTTP 301 Moved")),
])
def test_other_answers_are_reported_as_they_came(code, phrase, headers, outcome):
    p, agent, _ = poster()
    d = p.post("http://h/", b"{}", {})
    agent.requests[0][-1].callback(FakeResponse(code, phrase, headers))
    assert result(d) == outcome and not outcome.ok


def test_no_answer_within_the_timeout_is_an_outcome_not_a_failure():
    p, agent, clock = poster(timeout=7)
    d = p.post("http://h/", b"{}", {})
    clock.advance(6.9)
    assert not d.called
    clock.advance(0.1)
    assert result(d) == Outcome(error="no answer within 7 s")
    assert agent.requests[0][-1].called  # the request itself was cancelled


@pytest.mark.parametrize("exc, text", [
    (error.ConnectionRefusedError(), "connection refused"),
    (error.DNSLookupError("nx.example"), "DNS lookup failed"),
    (error.TimeoutError(), "no answer within 10 s"),
])
def test_connection_failures_are_described_briefly(exc, text):
    clock = Clock()

    class Failing:
        def request(self, *args: Any) -> Deferred:
            return fail(exc)
    assert result(AgentPoster(clock, 10, Failing()).post("http://h/", b"", {})) == \
        Outcome(error=text)


def test_a_response_never_received_names_its_first_reason():
    from twisted.python.failure import Failure
    clock = Clock()

    class Failing:
        def request(self, *args: Any) -> Deferred:
            return fail(ResponseNeverReceived([Failure(error.ConnectionLost("gone"))]))
    outcome = result(AgentPoster(clock, 10, Failing()).post("http://h/", b"", {}))
    assert outcome.code is None and outcome.error.startswith("ConnectionLost")


# -- URLs ---------------------------------------------------------------------------------
@pytest.mark.parametrize("url", ["http://127.0.0.1:8080/hook", "https://hooks.example.com",
                                 "https://h.example/a/b?token=x&y=1", "http://[::1]:9/x"])
def test_valid_urls(url):
    assert check_url(url) == url


@pytest.mark.parametrize("url, why", [
    ("ftp://h/x", "http:// or https://"), ("file:///etc/passwd", "http:// or https://"),
    ("javascript:alert(1)", "http:// or https://"), ("http:///x", "no host"),
    ("http://u:p@h/x", "credentials"), ("http://h/x#frag", "fragment"),
    ("http://h/a b", "spaces"), ("http://h/\u00e9", "ASCII"), ("http://h:99999/", "not a URL"),
    ("http://h\\@evil/", "backslash"), ("http://h/" + "a" * MAX_URL, "longer than"),
    ("", "empty"), ("http://h:0/", "port 0"),
])
def test_invalid_urls_say_why(url, why):
    with pytest.raises(ValueError, match=why):
        check_url(url)


def test_redaction_keeps_the_origin_only():
    assert redact("https://hooks.slack.com/services/T0/B0/XXXX") == "https://hooks.slack.com/…"
    assert redact("http://h:8080/x?token=secret") == "http://h:8080/…"
    assert redact("http://h:8080/") == "http://h:8080/"
    assert redact("http://h") == "http://h"


# -- [webhooks] options -------------------------------------------------------------------
def load(tmp_path, text: str) -> config.Settings:
    path = tmp_path / "c.ini"
    path.write_text("[webhooks]\n" + text)
    return config.load(str(path))


def test_webhook_options_load(tmp_path):
    s = load(tmp_path, "url = https://h.example/x\nsecret = k\nevents = started, ended\n"
                       "job-url-hosts = h.example, *.corp, 10.0.0.0/8\nconcurrency = 8\n")
    assert s.webhook_url == "https://h.example/x" and s.webhook_secret == "k"
    assert s.webhook_events == ("started", "ended") and s.webhook_concurrency == 8
    assert [str(h) for h in s.webhook_job_url_hosts] == ["h.example", "*.corp", "10.0.0.0/8"]


@pytest.mark.parametrize("text, named", [
    ("url = ftp://h/", "[webhooks] url"), ("events = finished", "[webhooks] events"),
    ("events =", "[webhooks] events"), ("concurrency = 0", "[webhooks] concurrency"),
    ("concurrency = 65", "[webhooks] concurrency"), ("timeout = 0", "[webhooks] timeout"),
    ("retry-for = -1", "[webhooks] retry-for"), ("backoff = 0", "[webhooks] backoff"),
    ("backoff = 60\nbackoff-max = 10", "[webhooks] backoff-max"),
    ("job-url-hosts = not_a host!", "[webhooks] job-url-hosts"),
    ("allow-job-urls = maybe", "[webhooks] allow-job-urls"),
])
def test_bad_webhook_options_stop_start_up_naming_the_option(tmp_path, text, named):
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text + "\n")
    assert named in str(caught.value)
