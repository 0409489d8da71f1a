"""The job's side of the stats (runner/stats.py, runner/crawl.py): JSON-safe values, the
report line and its bound, the non-blocking channel, the extension's reports, and the
settings crawld adds to a crawl (with Scrapy's real Settings)."""
from __future__ import annotations

import datetime
import decimal
import enum
import json
import os
import threading

import pytest
from scrapy.settings import Settings

from crawld.runner import crawl, stats


class Color(enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


class Thing:
    def __str__(self) -> str:
        return "a thing"


UTC = datetime.timezone.utc


def test_json_safe_values():
    aware = datetime.datetime(2026, 11, 26, 13, 5, 16, 920257, tzinfo=UTC)
    naive = datetime.datetime(2026, 11, 26, 13, 5, 16)
    value = {
        "start_time": aware, "naive": naive, "day": datetime.date(2026, 1, 2),
        "at": datetime.time(3, 4), "took": datetime.timedelta(minutes=1, seconds=2.5),
        "money": decimal.Decimal("1.25"), "nan": float("nan"), "inf": float("-inf"),
        "bad": decimal.Decimal("NaN"), "raw": b"ok \xff", "set": {7}, "tuple": (1, "a"),
        "color": Color.RED, "level": Level.HIGH, "yes": True, "none": None,
        "thing": Thing(), 3: "int key", ("a", 1): "tuple key",
        "nested": {"deeper": [aware, {"x": float("inf")}]},
    }
    safe = stats.json_safe(value)
    assert safe == {
        "start_time": "2026-11-26T13:05:16.920257+00:00",
        "naive": "2026-11-26T13:05:16+00:00",
        "day": "2026-01-02", "at": "03:04:00", "took": 62.5, "money": 1.25, "nan": None,
        "inf": None, "bad": None, "raw": "ok \ufffd", "set": [7], "tuple": [1, "a"],
        "color": "red", "level": 3, "yes": True, "none": None, "thing": "a thing",
        "3": "int key", "['a', 1]": "tuple key",
        "nested": {"deeper": ["2026-11-26T13:05:16.920257+00:00", {"x": None}]},
    }
    assert type(safe["level"]) is int
    json.dumps(safe, allow_nan=False)  # standard JSON


def test_json_safe_bounds_the_nesting():
    deep: list = []
    node = deep
    for _ in range(50):
        node.append([])
        node = node[0]
    safe = stats.json_safe({"deep": deep})
    for _ in range(stats.MAX_DEPTH):
        safe = safe[0] if isinstance(safe, list) else safe["deep"]
    assert isinstance(safe, str), "past MAX_DEPTH the rest is text"


def test_a_report_is_one_json_line_within_its_bound():
    line = stats.report_line({"item_scraped_count": 3, "lone": "\ud800"})
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert json.loads(line) == {"stats": {"item_scraped_count": 3, "lone": "?"}}
    big = {"small": 1, "huge": "x" * 500, "large": "y" * 300}
    trimmed = json.loads(stats.report_line(big, limit=400))["stats"]
    assert trimmed["small"] == 1 and trimmed["huge"] == "(omitted: 502 bytes)"
    assert trimmed["large"] == "y" * 300, "the biggest go first, only as many as needed"
    many = {f"stat/{i}": i for i in range(100)}
    assert json.loads(stats.report_line(many, limit=200)) == {
        "stats": {"crawld/omitted": "100 stats over 200 bytes"}}


@pytest.fixture
def pipe():
    r, w = os.pipe()
    os.set_blocking(w, False)
    yield r, w
    for fd in (r, w):
        try:
            os.close(fd)
        except OSError:
            pass


def fill(fd: int) -> int:
    """Fill a non-blocking pipe; returns how many bytes it took."""
    total = 0
    while True:
        try:
            total += os.write(fd, b"." * 65536)
        except BlockingIOError:
            return total


def read_all(fd: int, size: int) -> bytes:
    got = b""
    while len(got) < size:
        got += os.read(fd, size - len(got))
    return got


def test_the_channel_writes_whole_lines_and_never_blocks(pipe):
    r, w = pipe
    channel = stats.Channel(w)
    channel.send(b"one\n")
    assert os.read(r, 100) == b"one\n"
    stuffed = fill(w)
    channel.send(b"not started\n")
    channel.send(b"newer\n")   # replaces the line nothing of which went out
    assert channel.pending == b"newer\n" and not channel.partial
    read_all(r, stuffed)
    channel.send(b"newest\n")
    assert os.read(r, 100) == b"newest\n", "the newest report, whole"
    # a line cut by a full pipe is finished before any other is started
    long = b"L" * 200_000 + b"\n"
    channel.send(long)
    assert channel.partial
    got = os.read(r, 65536)
    channel.send(b"dropped\n")         # the rest of the long line goes first ...
    while channel.partial:
        got += os.read(r, 65536)
        channel.send(b"next\n")
    got += os.read(r, 300_000)
    assert got == long + b"next\n", "... lines sent meanwhile are dropped, the one " \
        "sent as it could finish follows it"


def test_the_last_report_waits_for_room_a_bounded_time(pipe, monkeypatch):
    r, w = pipe
    channel = stats.Channel(w)
    stuffed = fill(w)
    reader = threading.Thread(target=read_all, args=(r, stuffed + 5))
    reader.start()
    channel.send(b"last\n", final=True)   # waits until the reader made room
    reader.join(10)
    assert not channel.pending and not reader.is_alive()
    monkeypatch.setattr(stats, "FINAL_WAIT", 0.05)
    fill(w)
    channel.send(b"never read\n", final=True)
    assert channel.pending == b"never read\n", "given up after FINAL_WAIT"


def test_a_closed_channel_ends_the_reports(pipe, capsys):
    r, w = pipe
    os.close(r)
    channel = stats.Channel(w)
    channel.send(b"x\n")
    assert channel.fd is None
    channel.send(b"y\n")
    assert capsys.readouterr().err.count("stats channel closed") == 1


def test_the_channel_comes_from_the_environment(pipe, tmp_path, capsys):
    r, w = pipe
    os.set_blocking(w, True)
    assert stats.Channel.from_env({}) is None
    channel = stats.Channel.from_env({"CRAWLD_STATS_FD": str(w)})
    assert channel.fd == w and not os.get_blocking(w) and not os.get_inheritable(w)
    with open(tmp_path / "f", "w") as fh:
        assert stats.Channel.from_env({"CRAWLD_STATS_FD": str(fh.fileno())}) is None
    assert stats.Channel.from_env({"CRAWLD_STATS_FD": "x"}) is None
    assert capsys.readouterr().err.count("no stats are reported") == 2


def test_the_interval_comes_from_the_environment():
    assert stats.interval_from_env({}) == stats.DEFAULT_INTERVAL
    assert stats.interval_from_env({"CRAWLD_STATS_INTERVAL": "1.5"}) == 1.5
    for bad in ("0", "-1", "nan", "soon"):
        assert stats.interval_from_env({"CRAWLD_STATS_INTERVAL": bad}) == 5.0


class FakeTask:
    def __init__(self, function) -> None:
        self.function = function
        self.running = False
        self.interval = None

    def start(self, interval: float, now: bool = True) -> None:
        self.running, self.interval = True, interval

    def stop(self) -> None:
        self.running = False


class FakeStats:
    def __init__(self) -> None:
        self.values = {"start_time": datetime.datetime(2026, 1, 1, tzinfo=UTC)}

    def get_stats(self) -> dict:
        return self.values


def test_the_extension_reports_at_start_every_interval_and_at_the_end(pipe, monkeypatch):
    r, w = pipe
    tasks: list[FakeTask] = []
    monkeypatch.setattr(stats, "looping_call", lambda f: tasks.append(FakeTask(f)) or tasks[-1])
    found = FakeStats()
    reporter = stats.StatsReporter(found, stats.Channel(w), 2.0)

    def reports() -> list[dict]:
        return [json.loads(line)["stats"] for line in os.read(r, 65536).splitlines()]
    reporter.engine_started()
    assert reports() == [{"start_time": "2026-01-01T00:00:00+00:00"}]
    assert tasks[0].running and tasks[0].interval == 2.0
    found.values["item_scraped_count"] = 4
    tasks[0].function()
    assert reports()[0]["item_scraped_count"] == 4
    found.values["finish_reason"] = "finished"
    reporter.spider_closed(None, "finished")
    reporter.engine_stopped()
    assert [s["finish_reason"] for s in reports()] == ["finished", "finished"]
    assert not tasks[0].running


def test_a_failing_report_never_stops_the_crawl(pipe, capsys):
    class Broken:
        def get_stats(self):
            raise RuntimeError("stats are gone")
    reporter = stats.StatsReporter(Broken(), stats.Channel(pipe[1]), 1.0)
    reporter.report()
    reporter.report()
    assert capsys.readouterr().err.count("cannot report the stats") == 1


# -- the settings crawld adds (runner/crawl.py) ---------------------------------------
def test_the_extension_joins_the_project_s_own_and_can_be_switched_off():
    settings = Settings({"EXTENSIONS": {"myproject.Ext": 500}}, priority="project")
    crawl.add_extension(settings)
    merged = settings.getwithbase("EXTENSIONS")
    assert merged[crawl.EXTENSION] == crawl.ORDER and merged["myproject.Ext"] == 500
    assert "scrapy.extensions.corestats.CoreStats" in merged, "Scrapy's own stay"
    off = Settings({"EXTENSIONS": {crawl.EXTENSION: None}}, priority="project")
    crawl.add_extension(off)
    assert off.getwithbase("EXTENSIONS")[crawl.EXTENSION] is None


def test_the_items_feed_only_without_feeds_of_the_project():
    settings = Settings()
    crawl.add_feed(settings, "/data/items/j.jl")
    feeds = settings.getdict("FEEDS")
    assert feeds == {"crawld-items:///data/items/j.jl": crawl.FEED_OPTIONS}
    assert settings.getwithbase("FEED_STORAGES")["crawld-items"] == crawl.STORAGE
    assert settings.getpriority("FEEDS") == 0, "the lowest: anything else replaces it"
    for own in ({"FEEDS": {"out.csv": {"format": "csv"}}}, {"FEED_URI": "out.json"}):
        settings = Settings(own, priority="project")
        crawl.add_feed(settings, "/data/items/j.jl")
        assert "crawld-items" not in json.dumps(settings.getdict("FEEDS"))


def test_the_items_storage_appends_each_write_at_once(tmp_path):
    target = tmp_path / "j.jl"
    target.write_bytes(b"")
    storage = crawl.ItemsFile(f"crawld-items://{target}", feed_options={})
    fh = storage.open(None)
    fh.write(b'{"a": 1}\n')
    assert target.read_bytes() == b'{"a": 1}\n', "no buffer between the item and the file"
    storage.store(fh)
    assert fh.closed


def test_job_settings_are_the_project_s_plus_crawld_s(tmp_path, monkeypatch):
    (tmp_path / "scrapy.cfg").write_text("[settings]\ndefault = proj_settings\n")
    (tmp_path / "proj_settings.py").write_text('BOT_NAME = "proj"\n'
                                               'EXTENSIONS = {"proj.Ext": 10}\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("SCRAPY_SETTINGS_MODULE", "SCRAPY_PROJECT", "CRAWLD_STATS_FD",
                 "CRAWLD_ITEMS"):
        monkeypatch.delenv(name, raising=False)
    assert crawl.job_settings(["scrapy", "crawl", "s"]) is None, "nothing to add"
    monkeypatch.setenv("CRAWLD_STATS_FD", "3")
    monkeypatch.setenv("CRAWLD_ITEMS", "/data/items/j.jl")
    assert crawl.job_settings(["scrapy", "list"]) is None, "only a crawl"
    settings = crawl.job_settings(["scrapy", "crawl", "s"])
    assert settings["BOT_NAME"] == "proj"
    assert set(settings.getwithbase("EXTENSIONS")) >= {"proj.Ext", crawl.EXTENSION}
    assert list(settings.getdict("FEEDS")) == ["crawld-items:///data/items/j.jl"]
