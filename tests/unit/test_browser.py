"""Browser jobs, daemon side, without a browser: the control channel, the events file,
the runner's command, kept posts, and the helpers of the browser API."""
from __future__ import annotations

import base64
import io
import json
import os

import pytest
from twisted.internet.defer import succeed
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from crawld import browser, runner
from crawld.http import routes_browser
from crawld.http.files import list_files, read_output
from crawld.http.routes_browser import browse_params
from crawld.browser import (CONTROL_IN, CONTROL_OUT, MAX_POSTS, BrowserProtocol, Browsers,
                            Channel, Settings, find_browser, last_progress, read_events)
from crawld.errors import BadRequest, NotFound
from crawld.model import Actor, Job, JobStatus
from crawld.process import Exit
from crawld.supervisor import describe_exit
from tests.unit.fakes import result

T0 = 1_800_000_000.0


def channel(events_file=None, sent=None) -> tuple[Channel, Clock]:
    clock = Clock()
    clock.advance(T0)
    ch = Channel("job-1", events_file if events_file is not None else io.BytesIO(),
                 clock.seconds)
    if sent is not None:
        ch.send_line = sent.append
    return ch, clock


def lines(ch: Channel, *objects) -> None:
    ch.data_received(b"".join(json.dumps(o).encode() + b"\n" for o in objects))


def failure_of(d):
    out = []
    d.addErrback(out.append)
    assert out, "the Deferred has not failed"
    return out[0]


# ------------------------------------------------------------------------------ Channel


def test_json_lines_split_across_chunks_become_numbered_events_in_the_file(tmp_path):
    path = tmp_path / "job-1.events"
    ch, clock = channel(open(path, "ab"))
    ch.data_received(b'{"type": "po')
    assert ch.count == 0 and not path.read_bytes(), "half a line is not an event yet"
    ch.data_received(b'st", "data": {"n": 1}}\n{"type": "progress", "value": 0.5, '
                     b'"label": "half"}\n{"type": "fi')
    clock.advance(2)
    ch.data_received(b'le", "name": "a.png", "size": 3, "extra": "x"}\n')
    ch.data_received(b'{"type": "result", "data": [1, "\xc3\xa9"]}')
    assert ch.count == 3, "no newline yet: the result is still buffered"
    ch.data_received(b"\n")
    events = read_events(str(path))
    assert [e["id"] for e in events] == [1, 2, 3, 4]
    assert [e["type"] for e in events] == ["post", "progress", "file", "result"]
    assert [e["data"] for e in events] == [
        {"n": 1}, {"value": 0.5, "label": "half"}, {"name": "a.png", "size": 3}, [1, "é"]]
    assert [e["date"] for e in events] == [T0, T0, T0 + 2, T0 + 2]
    assert b"\\u00e9" not in path.read_bytes(), "written as UTF-8, not escaped"
    assert [p["data"] for p in ch.posts] == [{"n": 1}]


def test_ready_is_not_an_event():
    ch, _ = channel()
    lines(ch, {"type": "ready"})
    assert ch.count == 0 and ch.events_file.getvalue() == b""


@pytest.mark.parametrize("line", [
    b"not json", b"", b"[1, 2]", b'"a string"', b"42", b"null", b'{"no": "type"}',
    b'{"type": "unknown-kind", "data": 1}', b'{"type": "post", "data": ', b"\xff\xfe",
])
def test_unreadable_or_unknown_lines_are_ignored_and_the_stream_goes_on(line):
    ch, _ = channel()
    ch.data_received(line + b'\n{"type": "post", "data": "after"}\n')
    assert ch.count == 1
    [event] = read_events_from_bytes(ch.events_file.getvalue())
    assert event == {"id": 1, "date": T0, "type": "post", "data": "after"}


def read_events_from_bytes(data: bytes):
    return [json.loads(line) for line in data.splitlines()]


def test_count_continues_from_the_number_it_starts_with():
    ch, _ = channel()
    ch.count = 7  # Browsers.spawn starts it at the lines already in the file
    lines(ch, {"type": "post", "data": 1})
    assert json.loads(ch.events_file.getvalue())["id"] == 8


def test_screenshot_request_and_reply_by_req():
    sent: list[bytes] = []
    ch, _ = channel(sent=sent)
    first = ch.screenshot("/tmp/shots/1.png", True)
    second = ch.screenshot("/tmp/shots/2.png", False)
    assert [json.loads(s) for s in sent] == [
        {"type": "screenshot", "req": 1, "path": "/tmp/shots/1.png", "full_page": True},
        {"type": "screenshot", "req": 2, "path": "/tmp/shots/2.png", "full_page": False}]
    assert all(s.endswith(b"\n") and s.count(b"\n") == 1 for s in sent)
    lines(ch, {"type": "screenshot", "req": 99, "ok": True})  # nobody waits for it
    lines(ch, {"type": "screenshot", "req": 2, "ok": False, "error": "boom"})
    assert result(second) == {"type": "screenshot", "req": 2, "ok": False, "error": "boom"}
    assert not first.called
    lines(ch, {"type": "screenshot", "req": 1, "ok": True})
    assert result(first)["ok"] is True
    lines(ch, {"type": "screenshot", "req": 1, "ok": True})  # a duplicate reply: ignored
    assert ch.count == 0 and ch.shots == {}, "replies are not events"


def test_message_is_sent_as_one_json_line():
    sent: list[bytes] = []
    ch, _ = channel(sent=sent)
    ch.message({"go": "é"})
    assert sent == [json.dumps({"type": "message", "data": {"go": "é"}},
                               ensure_ascii=False).encode() + b"\n"]


def test_close_fails_pending_screenshots_and_refuses_sends(tmp_path):
    sent: list[bytes] = []
    events = open(tmp_path / "e", "ab")
    ch, _ = channel(events, sent=sent)
    waiting = ch.screenshot("/x.png", False)
    ch.close()
    assert failure_of(waiting).check(NotFound)
    assert ch.shots == {} and events.closed
    with pytest.raises(NotFound):
        ch.send({"type": "message", "data": 1})
    with pytest.raises(NotFound):
        ch.message("hi")
    with pytest.raises(NotFound):
        ch.screenshot("/y.png", False)
    assert len(sent) == 1
    lines(ch, {"type": "post", "data": "late"})  # a write to the closed file is only logged
    ch.close()  # twice is harmless


def test_take_posts_hands_each_post_out_once():
    ch, _ = channel()
    lines(ch, {"type": "post", "data": 1}, {"type": "progress", "value": 1},
          {"type": "post", "data": 2})
    assert [(p["id"], p["data"]) for p in ch.take_posts()] == [(1, 1), (3, 2)]
    assert ch.take_posts() == []
    lines(ch, {"type": "post", "data": 3})
    assert [p["data"] for p in ch.take_posts()] == [3]


def test_unread_posts_are_bounded_oldest_dropped_first(monkeypatch):
    assert channel()[0].posts.maxlen == MAX_POSTS
    monkeypatch.setattr(browser, "MAX_POSTS", 3)
    ch, _ = channel()
    lines(ch, *({"type": "post", "data": i} for i in range(5)))
    assert [p["data"] for p in ch.take_posts()] == [2, 3, 4]
    assert ch.count == 5 and len(ch.events_file.getvalue().splitlines()) == 5, \
        "the events file keeps every post"


def test_an_overlong_line_is_dropped(monkeypatch):
    monkeypatch.setattr(browser, "MAX_LINE", 64)
    ch, _ = channel()
    ch.data_received(b'{"type": "post", "data": "' + b"x" * 100)
    ch.data_received(b'xx"}\n')  # the end of the dropped line is not read as a line
    lines(ch, {"type": "post", "data": "ok"})
    assert [p["data"] for p in ch.take_posts()] == ["ok"] and ch.count == 1


def ended_with(ch: Channel, reason) -> "object":
    """What the job's process protocol reports when the process ends with ``reason``."""
    proto = BrowserProtocol(ch)
    proto.processEnded(Failure(reason))
    return result(proto.ended)


def test_the_jobs_own_error_becomes_the_reason_of_a_failed_exit():
    ch, _ = channel()
    lines(ch, {"type": "error", "message": "timed out after 3 s (timeout): Page.wait_for_"
                                           "selector: Timeout 3000ms exceeded."})
    assert ch.count == 0, "an error is not an event"
    ended = ended_with(ch, ProcessTerminated(exitCode=1))
    assert (ended.code, ended.signal) == (1, None)
    assert ended.reason.startswith("timed out after 3 s (timeout): Page.wait_for_selector")
    assert describe_exit(ended) == ended.reason
    assert ch.closed


def test_no_error_or_a_success_keeps_the_plain_exit():
    ch, _ = channel()
    assert ended_with(ch, ProcessTerminated(exitCode=1)).reason is None
    assert describe_exit(Exit(1, None)) == "exit code 1"
    ch, _ = channel()
    lines(ch, {"type": "error", "message": "x" * 5000})
    assert len(ch.error) == browser.MAX_REASON, "bounded"
    assert ended_with(ch, ProcessDone(0)) == Exit(0, None)


# ------------------------------------------------------------------------ events file


def write_events(path, count: int, torn: bool = False) -> None:
    with open(path, "wb") as f:
        for i in range(1, count + 1):
            f.write(json.dumps({"id": i, "type": "post", "data": i}).encode() + b"\n")
        if torn:
            f.write(b'{"id": %d, "type": "po' % (count + 1))


def test_read_events_after_and_limit(tmp_path):
    path = tmp_path / "x.events"
    write_events(path, 10)
    assert [e["id"] for e in read_events(str(path))] == list(range(1, 11))
    assert [e["id"] for e in read_events(str(path), after=7)] == [8, 9, 10]
    assert [e["id"] for e in read_events(str(path), after=2, limit=3)] == [3, 4, 5]
    assert read_events(str(path), after=10) == []
    assert read_events(str(path), after=99) == []


def test_read_events_skips_a_torn_last_line_and_a_missing_file(tmp_path):
    path = tmp_path / "x.events"
    write_events(path, 3, torn=True)
    assert [e["id"] for e in read_events(str(path))] == [1, 2, 3]
    assert read_events(str(path), after=3) == []
    assert read_events(str(tmp_path / "missing.events")) == []


def test_read_events_numbers_by_line_so_a_bad_line_keeps_the_ids(tmp_path):
    path = tmp_path / "x.events"
    path.write_bytes(b'{"id": 1}\ngarbage\n{"id": 3}\n{"id": 4}\n')
    assert read_events(str(path), after=2) == [{"id": 3}, {"id": 4}]
    assert read_events(str(path), limit=2) == [{"id": 1}, {"id": 3}]


def test_last_progress():
    assert last_progress([]) == (None, None)
    events = [{"type": "progress", "data": {"value": 0.1, "label": "a"}},
              {"type": "post", "data": {"value": 9, "label": "not progress"}},
              {"type": "progress", "data": {"value": 0.7, "label": None}},
              {"type": "result", "data": 1}]
    assert last_progress(events) == (0.7, None)
    assert last_progress([{"type": "progress", "data": None}]) == (None, None)


# ---------------------------------------------------------------------------- Browsers


def browser_job(kind: str = "script", payload: str = '{"a": 1}') -> Job:
    return Job(id="0b7c8a52-3c39-4f39-9a55-0d1c1f4b6a11", status=JobStatus.PENDING,
               actor=Actor.USER, schedule="now", project="proj", spider="shoot",
               created=T0, updated=T0, kind=kind, payload=payload)


def browsers(tmp_path, executable: str | None = "/usr/bin/chromium") -> Browsers:
    clock = Clock()
    return Browsers(clock, str(tmp_path / "data"), str(tmp_path / "logs"),
                    Settings(executable, kill_grace=7.5), "/venv/bin/python",
                    to_thread=lambda f, *a: succeed(f(*a)))


def test_command_of_a_script_job(tmp_path):
    b = browsers(tmp_path)
    job = browser_job("script")
    cmd = b.command(job, "/projects/proj/3", "/projects/proj/3/scripts/shoot.py",
                    {"PATH": "/bin", "HOME": "/home/c"})
    assert cmd.args == ("/venv/bin/python", "-c", runner.BOOTSTRAP, runner.DIR, "shim")
    assert cmd.executable == "/venv/bin/python"
    assert os.path.isfile(os.path.join(runner.DIR, "shim.py"))
    assert cmd.cwd == "/projects/proj/3"
    tmp = os.path.join(str(tmp_path / "data"), "tmp", job.id)
    assert dict(cmd.env) == {
        "PATH": "/bin", "HOME": "/home/c",
        "CRAWLD_JOB_ID": job.id, "CRAWLD_PROJECT": "proj", "CRAWLD_SPIDER": "shoot",
        "CRAWLD_SCRIPT": "/projects/proj/3/scripts/shoot.py",
        "CRAWLD_FILES_DIR": os.path.join(str(tmp_path / "data"), "files", job.id),
        "CRAWLD_TMP": tmp, "TMPDIR": tmp, "CRAWLD_BROWSER": "/usr/bin/chromium",
        "CRAWLD_KILL_GRACE": "6.5", "CRAWLD_CONTROL_OUT": str(CONTROL_OUT),
        "CRAWLD_CONTROL_IN": str(CONTROL_IN), "CRAWLD_ARGUMENT": '{"a": 1}'}
    assert (CONTROL_OUT, CONTROL_IN) == (3, 4)
    assert b.tmp_dir(job.id) == tmp


def test_command_of_a_browse_job_passes_its_parameters_not_an_argument(tmp_path):
    b = browsers(tmp_path)
    params = '{"url": "https://example.com/", "timeout": 30.0}'
    env = b.command(browser_job("browse", params), "/files", None, {}).env
    assert env["CRAWLD_BROWSE"] == params and "CRAWLD_ARGUMENT" not in env
    assert env["CRAWLD_SCRIPT"] == "", "an empty script tells the runner to browse"


def test_command_does_not_change_the_base_environment(tmp_path):
    base = {"PATH": "/bin"}
    browsers(tmp_path).command(browser_job(), "/p", "/p/s.py", base)
    assert base == {"PATH": "/bin"}


def test_command_is_refused_without_a_browser(tmp_path):
    with pytest.raises(RuntimeError, match="no Chromium found"):
        browsers(tmp_path, executable=None).command(browser_job(), "/p", "/p/s.py", {})


def test_posts_of_an_ended_job_are_kept_for_one_take(tmp_path):
    b = browsers(tmp_path)
    os.makedirs(b.tmp_dir("j"))
    ch = b.channels["j"] = Channel("j", io.BytesIO(), lambda: 1.0)
    lines(ch, {"type": "post", "data": "a"}, {"type": "post", "data": "b"})
    assert [p["data"] for p in b.take_posts("j")] == ["a", "b"]  # while it runs
    lines(ch, {"type": "post", "data": "c"})
    result(b.ended("j"))
    assert ch.closed and "j" not in b.channels
    assert not os.path.exists(b.tmp_dir("j")), "its temporary directory is removed"
    with pytest.raises(NotFound):
        b.channel("j")
    assert [p["data"] for p in b.take_posts("j")] == ["c"]
    assert b.take_posts("j") == []
    assert b.take_posts("never-ran") == []


def test_an_ended_job_without_unread_posts_keeps_nothing_and_forget_drops_them(tmp_path):
    b = browsers(tmp_path)
    b.channels["quiet"] = Channel("quiet", io.BytesIO(), lambda: 1.0)
    b.channels["chatty"] = ch = Channel("chatty", io.BytesIO(), lambda: 1.0)
    lines(ch, {"type": "post", "data": 1})
    result(b.ended("quiet"))
    result(b.ended("chatty"))
    assert list(b.posts) == ["chatty"]
    b.forget("chatty")
    assert b.take_posts("chatty") == []
    result(b.ended("unknown"))  # a job that never had a channel: only the tmp dir goes


def test_find_browser_with_a_configured_path(tmp_path):
    exe = tmp_path / "chrome"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    plain = tmp_path / "not-executable"
    plain.write_text("")
    assert find_browser(str(exe)) == str(exe)
    assert find_browser(str(tmp_path / "missing")) is None
    assert find_browser(str(plain)) is None


def test_find_browser_auto_takes_the_first_installed_candidate(tmp_path, monkeypatch):
    second = tmp_path / "second"
    second.write_text("")
    second.chmod(0o755)
    monkeypatch.setattr(browser, "CANDIDATES", (str(tmp_path / "first"), str(second)))
    assert find_browser("auto") == str(second)
    assert find_browser("") == str(second)
    monkeypatch.setattr(browser, "CANDIDATES", (str(tmp_path / "first"),))
    assert find_browser() is None


# ------------------------------------------------------------ the browser routes' helpers


def test_read_output_from_offsets(tmp_path):
    path = tmp_path / "x.out"
    path.write_bytes(b"hello world\n")
    assert read_output(str(path), 0) == ("hello world\n", 12)
    assert read_output(str(path), 6) == ("world\n", 12)
    assert read_output(str(path), 12) == ("", 12)
    assert read_output(str(path), 100) == ("", 100)
    assert read_output(str(path), 0, limit=5) == ("hello", 5)
    assert read_output(str(path), 5, limit=5) == (" worl", 10)
    assert read_output(str(tmp_path / "missing.out"), 40) == ("", 40)


@pytest.mark.parametrize("char", ["é", "€", "😀"])
def test_read_output_never_splits_a_character_at_the_limit(tmp_path, char):
    encoded = char.encode()
    limit = 8
    for inside in range(1, len(encoded)):  # bytes of the character within the limit
        path = tmp_path / f"{inside}.out"
        head = "a" * (limit - inside)
        path.write_bytes(head.encode() + encoded + b"tail")
        text, pos = read_output(str(path), 0, limit)
        assert (text, pos) == (head, limit - inside), inside
        assert read_output(str(path), pos, limit) == (char + "tail", len(path.read_bytes()))
    # the whole character just fits: nothing is held back
    path = tmp_path / "fits.out"
    head = "a" * (limit - len(encoded))
    path.write_bytes(head.encode() + encoded + b"more")
    assert read_output(str(path), 0, limit) == (head + char, limit)


def test_read_output_in_small_pieces_gives_back_the_whole_text(tmp_path):
    text = "ascii é € 😀 mixed\nλόγος 😀😀 end"
    path = tmp_path / "x.out"
    path.write_text(text, encoding="utf-8")
    for limit in (4, 5, 6, 7):
        pieces, pos = [], 0
        while True:
            piece, pos = read_output(str(path), pos, limit)
            if not piece:
                break
            pieces.append(piece)
        assert "".join(pieces) == text, limit
        assert pos == len(text.encode())


def test_read_output_holds_back_a_partial_character_at_the_end_of_a_growing_log(tmp_path):
    path = tmp_path / "x.out"
    path.write_bytes(b"price: " + "€".encode()[:2])  # the job wrote 2 of 3 bytes so far
    text, pos = read_output(str(path), 0)
    with open(path, "ab") as f:
        f.write("€".encode()[2:] + b"\n")
    rest, _ = read_output(str(path), pos)
    assert text + rest == "price: €\n"


class FakeRequest:
    def __init__(self, **params: str | bytes) -> None:
        self.args = {k.replace("_", "-").encode(): [v if isinstance(v, bytes) else v.encode()]
                     for k, v in params.items()}


def b64(text: str, padded: bool = True) -> str:
    encoded = base64.urlsafe_b64encode(text.encode()).decode()
    return encoded if padded else encoded.rstrip("=")


@pytest.mark.parametrize("url", ["http://example.com", "https://example.com/a?b=c#d",
                                 "HTTPS://Example.COM/", "http://127.0.0.1:8080/x"])
def test_browse_params_accepts_http_urls(url):
    params = browse_params(FakeRequest(url=url))
    assert params == {"url": url, "screenshot": False,
                      "timeout": routes_browser.BROWSE_DEFAULT_TIMEOUT}


@pytest.mark.parametrize("url", ["ftp://example.com/", "file:///etc/passwd",
                                 "javascript:alert(1)", "data:text/html,<p>",
                                 "http://", "https:///path", "example.com", "",
                                 "chrome://settings"])
def test_browse_params_refuses_other_urls(url):
    with pytest.raises(BadRequest, match="http:// or https://"):
        browse_params(FakeRequest(url=url))


@pytest.mark.parametrize("html", ["<p>ÿ></p>", "<i>ü?</i>", "é?>~", "<b>?></b>", ""])
@pytest.mark.parametrize("padded", [True, False])
def test_browse_params_decodes_url_safe_base64_html(html, padded):
    encoded = b64(html, padded)
    params = browse_params(FakeRequest(html=encoded))
    assert params["html"] == html and "url" not in params


@pytest.mark.parametrize("bad", ["!!!!", "a", "PHA+PC9wPg==x", "PHA-PC9wPg===",
                                 base64.urlsafe_b64encode(b"\xff\xfe<p>").decode()])
def test_browse_params_refuses_invalid_base64_or_non_utf8_html(bad):
    with pytest.raises(BadRequest, match="url-safe base64"):
        browse_params(FakeRequest(html=bad))


def test_browse_params_needs_exactly_one_of_url_and_html():
    with pytest.raises(BadRequest, match="exactly one"):
        browse_params(FakeRequest())
    with pytest.raises(BadRequest, match="exactly one"):
        browse_params(FakeRequest(url="https://a.b/", html=b64("<p>")))


@pytest.mark.parametrize("given,expected", [
    (None, 30.0), ("", 30.0), ("10", 10.0), ("0.5", 0.5), ("3600", 3600.0)])
def test_browse_params_timeout(given, expected):
    kw = {} if given is None else {"timeout": given}
    assert browse_params(FakeRequest(url="https://a.b/", **kw))["timeout"] == expected


@pytest.mark.parametrize("bad", ["0", "-1", "3600.5", "1e9", "nan", "inf", "-inf", "ten"])
def test_browse_params_timeout_out_of_bounds(bad):
    with pytest.raises(BadRequest, match="'timeout'.*at most 3600"):
        browse_params(FakeRequest(url="https://a.b/", timeout=bad))


@pytest.mark.parametrize("given,expected", [
    (None, False), ("0", False), ("no", False), ("false", False), ("1", True),
    ("true", True), ("yes", True), ("TRUE", True), ("Yes", True)])
def test_browse_params_screenshot_flag(given, expected):
    kw = {} if given is None else {"screenshot": given}
    assert browse_params(FakeRequest(url="https://a.b/", **kw))["screenshot"] is expected


def test_browse_params_refuses_a_bad_flag_and_keeps_wait_for():
    with pytest.raises(BadRequest, match="'screenshot' must be 1 or 0"):
        browse_params(FakeRequest(url="https://a.b/", screenshot="maybe"))
    params = browse_params(FakeRequest(url="https://a.b/", wait_for="#main .item"))
    assert params["wait_for"] == "#main .item"
    assert "wait_for" not in browse_params(FakeRequest(url="https://a.b/", wait_for=""))


def test_browse_params_refuses_non_utf8_parameters():
    with pytest.raises(BadRequest, match="not valid UTF-8"):
        browse_params(FakeRequest(url=b"https://a.b/\xff"))


def test_list_files_skips_dot_files_directories_and_links(tmp_path):
    (tmp_path / "b.png").write_bytes(b"12345")
    (tmp_path / "a.txt").write_bytes(b"")
    (tmp_path / ".partial").write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "inner.txt").write_bytes(b"x")
    outside = tmp_path.parent / f"{tmp_path.name}-secret"
    outside.write_bytes(b"secret")
    (tmp_path / "link.txt").symlink_to(outside)
    import datetime as dt
    os.utime(tmp_path / "b.png", (1_800_000_000.25, 1_800_000_000.25))
    found = list_files(str(tmp_path))
    assert [(f["name"], f["size"]) for f in found] == [("a.txt", 0), ("b.png", 5)]
    assert dt.datetime.fromisoformat(found[1]["modified"]).timestamp() == 1_800_000_000.25
    assert list_files(str(tmp_path / "missing")) == []


def test_open_regular_refuses_links_fifos_and_linked_folders(tmp_path):
    from crawld.http.files import open_regular, read_screenshot
    job = tmp_path / "job"
    (job / "shots").mkdir(parents=True)
    (job / "ok.png").write_bytes(b"\x89PNG data")
    secret = tmp_path / "secret.db"
    secret.write_bytes(b"root-only data")
    (job / "link.png").symlink_to(secret)
    os.mkfifo(job / "fifo.png")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "x.png").write_bytes(b"outside")
    (job / "linked").symlink_to(tmp_path / "elsewhere")
    with open_regular(str(tmp_path), "job", "ok.png") as f:
        assert f.read() == b"\x89PNG data"
    for parts in (("job", "link.png"), ("job", "fifo.png"), ("job", "linked", "x.png"),
                  ("job", "missing.png"), ("job", "shots")):
        with pytest.raises(FileNotFoundError):
            open_regular(str(tmp_path), *parts)  # returns at once, even for the FIFO
    (job / "shots" / "1.png").symlink_to(secret)
    with pytest.raises(FileNotFoundError):
        read_screenshot(str(tmp_path), "job", "shots", "1.png")
    assert not os.path.lexists(job / "shots" / "1.png"), "the link is removed either way"
    (job / "shots" / "2.png").write_bytes(b"\x89PNG shot")
    assert read_screenshot(str(tmp_path), "job", "shots", "2.png") == b"\x89PNG shot"
    assert not (job / "shots" / "2.png").exists()
