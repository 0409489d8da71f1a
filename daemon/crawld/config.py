"""Settings: embedded defaults, overridden by an INI file, overridden by command-line flags.

Every option is validated here, once, so a bad value stops start-up with a message that
names the option instead of failing later inside a running daemon.
"""
from __future__ import annotations

import configparser
import importlib.resources
import ipaddress
import math
import os
import re
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional, Union

from . import outcomes
from .errors import BadRequest, ConfigError
from .hookurls import check_url, parse_hosts
from .spec import zone

DEFAULT_PORT = 7654

Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]


@dataclass(frozen=True)
class Listen:
    """One address the API listens on."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class Settings:
    """The validated configuration of one daemon."""

    data_dir: str = "./crawld-data"
    listen: tuple[Listen, ...] = (Listen("127.0.0.1", DEFAULT_PORT),)
    job_slots: int = 0  # 0 means 4 per CPU, resolved by ``slots``
    kill_grace: float = 10.0
    completed_cap: int = 1000
    completed_max_age_days: float = 30.0
    list_timeout: float = 60.0
    max_archive_size: int = 50 * 1024 * 1024
    max_archive_files: int = 10000
    max_unpacked_size: int = 500 * 1024 * 1024
    python: str = field(default_factory=lambda: sys.executable)
    preload: bool = True
    timezone: str = ""  # IANA name; "" means the system's local time
    log_level: str = "info"
    job_timeout: float = 0.0        # default wall-clock limit of spider jobs (0: none)
    run_as: str = ""                # user jobs run as when crawld starts as root ("": none)
    max_log_size: int = 0           # default limit of a job's .out + .err, bytes (0: none)
    memory_limit: int = 0           # default limit of a job's RSS, bytes (0: none)
    fail_on: tuple[str, ...] = ("all-requests-failed",)  # spider jobs' default conditions
    items: bool = True              # spider jobs' items to <data>/items/<id>.jl
    stats_interval: float = 5.0     # seconds between a spider job's stats reports
    browser_timeout: float = 300.0  # default wall-clock limit of browser jobs (0: none)
    browser_executable: str = "auto"  # Chromium; auto: the first one installed
    screenshot_timeout: float = 15.0
    auth: Optional[str] = None      # none | required; unset: required once credentials exist
    auth_realm: str = "crawld"      # HTTP Basic/Digest realm (Digest hashes depend on it)
    allowed_origins: tuple[str, ...] = ()  # origins whose pages may call the API (CORS)
    max_streams: int = 64           # followed logs and file downloads at once (429 past it)
    max_waits: int = 100            # requests waiting for jobs to end (wait=), 429 past it
    header_timeout: float = 30.0    # seconds for a request's line and headers to arrive
    body_timeout: float = 30.0      # seconds for a request's body to arrive, plus...
    body_min_rate: int = 16 * 1024  # ... one second per this many bytes received
    max_connections: int = 256      # connections open at once (503 past it)
    max_connections_per_client: int = 32  # from one address (IPv6: /64) at once
    idle_timeout: float = 60.0      # seconds before an idle connection is closed
    access_log: bool = True         # one line per HTTP request in the daemon's log
    hostnames: tuple[str, ...] = ()  # names of this server accepted in Host (auth = none)
    trusted_proxies: tuple[Network, ...] = ()  # peers whose X-Forwarded-For is believed
    max_password_checks: int = 2    # scrypt derivations at once (Basic); 503 past a queue
    session_ttl: float = 3600.0     # seconds a dashboard session lives without use
    https: bool = False             # serve the API over TLS (cert and key required)
    tls_cert: str = ""              # PEM certificate (or full chain)
    tls_key: str = ""               # PEM private key
    tls_chain: str = ""             # optional PEM intermediates
    # [webhooks] (webhooks.WebhookSettings; docs/configuration.md)
    webhook_url: str = ""           # every job's events are POSTed here ("": nowhere)
    webhook_secret: str = ""        # HMAC-SHA256 key of X-Crawld-Signature ("": unsigned)
    webhook_events: tuple[str, ...] = ("ended",)  # ended, started
    webhook_timeout: float = 10.0   # seconds per attempt
    webhook_retry_for: float = 86400.0  # seconds after the event that retries may go on
    webhook_backoff: float = 5.0    # first retry delay, doubled per failure
    webhook_backoff_max: float = 600.0  # the longest delay between two attempts
    webhook_concurrency: int = 4    # attempts in flight at once
    webhook_allow_job_urls: bool = True  # schedule-job's webhook= accepted at all
    webhook_job_url_hosts: tuple[Union[str, Network], ...] = ()  # per-job URLs' hosts
    event_streams: int = 32         # /events streams at once (429 past it)
    event_backlog: int = 1000       # events kept in memory for Last-Event-ID resumes
    keep_alive: float = 15.0        # seconds of silence before a stream's keep-alive
    scrapyd_listen: tuple[Listen, ...] = ()  # the scrapyd listener's addresses (): off
    scrapyd_node_name: str = ""     # node_name in scrapyd's answers ("": the host name)
    # [cluster] (issue 14; docs/cluster.md): jobs run by crawld workers on other hosts
    launcher: str = "local"         # local | celery
    broker: str = ""                # redis://HOST:PORT/DB or rediss://...; celery needs it
    heartbeat: float = 2.0          # seconds between a worker's heartbeats
    lost_after: float = 15.0        # seconds without a heartbeat before an attempt is lost
    daemon_url: str = ""            # the URL workers use (informational)

    @property
    def slots(self) -> int:
        """How many jobs may run at once: the configured number, or 4 per CPU."""
        return self.job_slots or 4 * (os.cpu_count() or 1)

    @property
    def data_path(self) -> str:
        return os.path.abspath(self.data_dir)


def parse_listen(text: str) -> Listen:
    """Parse ``HOST:PORT`` (``[v6]:PORT`` for IPv6) into a Listen."""
    m = re.fullmatch(r"\[([0-9a-fA-F:.]+)\]:(\d{1,5})|([^:\s]+):(\d{1,5})", text.strip())
    if not m:
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    host = m.group(1) or m.group(3)
    port = int(m.group(2) or m.group(4))
    if port > 65535:
        raise ValueError(f"port {port} is out of range")
    return Listen(host, port)


_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1024, "m": 1024**2, "mb": 1024**2,
               "g": 1024**3, "gb": 1024**3}


def parse_size(text: str) -> int:
    """Parse a byte size such as ``500``, ``64KB``, ``50 MB`` or ``1G`` (binary units)."""
    m = re.fullmatch(r"(\d+)\s*([a-zA-Z]*)", text.strip())
    if not m or m.group(2).lower() not in _SIZE_UNITS:
        raise ValueError(f"expected a size such as 50MB, got {text!r}")
    return int(m.group(1)) * _SIZE_UNITS[m.group(2).lower()]


def _positive(kind: Callable[[str], Any], allow_zero: bool = False) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        value = kind(text)
        if not math.isfinite(value):
            raise ValueError("must be a finite number")
        if value < 0 or (value == 0 and not allow_zero):
            raise ValueError(f"must be {'zero or more' if allow_zero else 'more than zero'}")
        return value
    return convert


def _log_level(text: str) -> str:
    level = text.strip().lower()
    if level not in ("debug", "info", "warn", "error"):
        raise ValueError("must be one of debug, info, warn, error")
    return level


def _boolean(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "yes", "true", "on"):
        return True
    if value in ("0", "no", "false", "off"):
        return False
    raise ValueError("must be yes or no")


def _timezone(text: str) -> str:
    name = text.strip()
    if name:
        try:
            zone(name)
        except BadRequest:
            raise ValueError("must be an IANA time zone name such as Europe/Paris") from None
    return name


def _auth_mode(text: str) -> str:
    mode = text.strip().lower()
    if mode not in ("none", "required"):
        raise ValueError("must be none or required")
    return mode


def _realm(text: str) -> str:
    realm = text.strip()
    if not realm or '"' in realm or "\\" in realm or not realm.isprintable():
        raise ValueError("must be printable text without quotes or backslashes")
    return realm


def _hostnames(text: str) -> tuple[str, ...]:
    names = tuple(t.lower().rstrip(".") for t in re.split(r"[,\s]+", text) if t)
    for name in names:
        if not re.fullmatch(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*",
                            name):
            raise ValueError(f"{name!r} is not a host name such as crawl.example.com")
    return names


def _origins(text: str) -> tuple[str, ...]:
    found = []
    for item in (t for t in re.split(r"[,\s]+", text) if t):
        m = re.fullmatch(r"(https?)://([A-Za-z0-9.-]+|\[[0-9a-fA-F:]+\])(:\d{1,5})?", item)
        if not m:
            raise ValueError(f"{item!r} is not an origin such as https://dash.example.com "
                             "(scheme://host[:port], no path, no wildcard)")
        found.append(item.lower())
    return tuple(found)


#: Twisted's reactor thread pool has 10 threads; file reads, /proc walks and pushes need
#: some of them whatever the password checks do.
MAX_PASSWORD_CHECKS = 8


def _password_checks(text: str) -> int:
    value = int(text)
    if not 1 <= value <= MAX_PASSWORD_CHECKS:
        raise ValueError(f"must be from 1 to {MAX_PASSWORD_CHECKS} (the daemon's 10 "
                         "threads also serve file reads and project pushes)")
    return value


def _networks(text: str) -> tuple[Network, ...]:
    found = []
    for item in (t for t in re.split(r"[,\s]+", text) if t):
        try:
            found.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"{item!r} is not an IP address or network such as 127.0.0.1 "
                             "or 10.0.0.0/8 (no host names)") from None
    return tuple(found)


def _webhook_url(text: str) -> str:
    return check_url(text) if text.strip() else ""


def _webhook_events(text: str) -> tuple[str, ...]:
    items = tuple(dict.fromkeys(t for t in re.split(r"[,\s]+", text.strip().lower()) if t))
    if not items or any(item not in ("ended", "started") for item in items):
        raise ValueError("must list one or both of ended, started")
    return items


def _webhook_concurrency(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 64:
        raise ValueError("must be from 1 to 64")
    return value


def _fail_on(text: str) -> tuple[str, ...]:
    return outcomes.parse(text)


def _stats_interval(text: str) -> float:
    value = float(text)
    if not (math.isfinite(value) and MIN_STATS_INTERVAL <= value <= MAX_STATS_INTERVAL):
        raise ValueError(f"must be from {MIN_STATS_INTERVAL:g} to {MAX_STATS_INTERVAL:g} "
                         "seconds")
    return value


#: Bounds of [crawld] stats-interval: each report is a store write per running job.
MIN_STATS_INTERVAL, MAX_STATS_INTERVAL = 1.0, 3600.0


def _listen_list(text: str) -> tuple[Listen, ...]:
    items = [t for t in re.split(r"[,\s]+", text) if t]
    if not items:
        raise ValueError("needs at least one HOST:PORT")
    return tuple(parse_listen(t) for t in items)


def _optional_listen_list(text: str) -> tuple[Listen, ...]:
    """Like ``_listen_list``, where empty means none (the listener is off)."""
    return _listen_list(text) if text.strip() else ()


def _launcher(text: str) -> str:
    value = text.strip().lower()
    if value not in ("local", "celery"):
        raise ValueError("must be local or celery")
    return value


def _broker(text: str) -> str:
    value = text.strip()
    if value and not re.fullmatch(r"rediss?://\S+", value):
        raise ValueError("must be a redis://HOST:PORT/DB or rediss://... URL")
    return value


def _node_name(text: str) -> str:
    name = text.strip()
    if len(name) > 255 or not name.isprintable():
        raise ValueError("must be printable text of at most 255 characters")
    return name


#: INI (section, option) -> (Settings field, converter). The single list of options.
OPTIONS: dict[tuple[str, str], tuple[str, Callable[[str], Any]]] = {
    ("crawld", "data-dir"): ("data_dir", str),
    ("crawld", "job-slots"): ("job_slots", _positive(int, allow_zero=True)),
    ("crawld", "kill-grace"): ("kill_grace", _positive(float, allow_zero=True)),
    ("crawld", "completed-cap"): ("completed_cap", _positive(int, allow_zero=True)),
    ("crawld", "completed-max-age-days"): ("completed_max_age_days", _positive(float)),
    ("crawld", "list-timeout"): ("list_timeout", _positive(float)),
    ("crawld", "max-archive-size"): ("max_archive_size", _positive(parse_size)),
    ("crawld", "max-archive-files"): ("max_archive_files", _positive(int)),
    ("crawld", "max-unpacked-size"): ("max_unpacked_size", _positive(parse_size)),
    ("crawld", "python"): ("python", str),
    ("crawld", "preload"): ("preload", _boolean),
    ("crawld", "log-level"): ("log_level", _log_level),
    ("crawld", "timezone"): ("timezone", _timezone),
    ("crawld", "job-timeout"): ("job_timeout", _positive(float, allow_zero=True)),
    ("crawld", "run-as"): ("run_as", str),
    ("crawld", "max-log-size"): ("max_log_size", _positive(parse_size, allow_zero=True)),
    ("crawld", "memory-limit"): ("memory_limit", _positive(parse_size, allow_zero=True)),
    ("crawld", "fail-on"): ("fail_on", _fail_on),
    ("crawld", "items"): ("items", _boolean),
    ("crawld", "stats-interval"): ("stats_interval", _stats_interval),
    ("browser", "executable"): ("browser_executable", str),
    ("browser", "timeout"): ("browser_timeout", _positive(float, allow_zero=True)),
    ("browser", "screenshot-timeout"): ("screenshot_timeout", _positive(float)),
    ("web", "listen"): ("listen", _listen_list),
    ("web", "auth"): ("auth", _auth_mode),
    ("web", "realm"): ("auth_realm", _realm),
    ("web", "allowed-origins"): ("allowed_origins", _origins),
    ("web", "hostnames"): ("hostnames", _hostnames),
    ("web", "max-streams"): ("max_streams", _positive(int)),
    ("web", "max-waits"): ("max_waits", _positive(int)),
    ("web", "header-timeout"): ("header_timeout", _positive(float)),
    ("web", "body-timeout"): ("body_timeout", _positive(float)),
    ("web", "body-min-rate"): ("body_min_rate", _positive(parse_size)),
    ("web", "max-connections"): ("max_connections", _positive(int)),
    ("web", "max-connections-per-client"): ("max_connections_per_client", _positive(int)),
    ("web", "idle-timeout"): ("idle_timeout", _positive(float)),
    ("web", "access-log"): ("access_log", _boolean),
    ("web", "trusted-proxies"): ("trusted_proxies", _networks),
    ("web", "max-password-checks"): ("max_password_checks", _password_checks),
    ("web", "session-ttl"): ("session_ttl", _positive(float)),
    ("web", "https"): ("https", _boolean),
    ("web", "cert"): ("tls_cert", str),
    ("web", "key"): ("tls_key", str),
    ("web", "chain"): ("tls_chain", str),
    ("webhooks", "url"): ("webhook_url", _webhook_url),
    ("webhooks", "secret"): ("webhook_secret", str),
    ("webhooks", "events"): ("webhook_events", _webhook_events),
    ("webhooks", "timeout"): ("webhook_timeout", _positive(float)),
    ("webhooks", "retry-for"): ("webhook_retry_for", _positive(float, allow_zero=True)),
    ("webhooks", "backoff"): ("webhook_backoff", _positive(float)),
    ("webhooks", "backoff-max"): ("webhook_backoff_max", _positive(float)),
    ("webhooks", "concurrency"): ("webhook_concurrency", _webhook_concurrency),
    ("webhooks", "allow-job-urls"): ("webhook_allow_job_urls", _boolean),
    ("webhooks", "job-url-hosts"): ("webhook_job_url_hosts", parse_hosts),
    ("events", "max-streams"): ("event_streams", _positive(int)),
    ("events", "backlog"): ("event_backlog", _positive(int)),
    ("events", "keep-alive"): ("keep_alive", _positive(float)),
    ("scrapyd", "listen"): ("scrapyd_listen", _optional_listen_list),
    ("scrapyd", "node-name"): ("scrapyd_node_name", _node_name),
    ("cluster", "launcher"): ("launcher", _launcher),
    ("cluster", "broker"): ("broker", _broker),
    ("cluster", "heartbeat"): ("heartbeat", _positive(float)),
    ("cluster", "lost-after"): ("lost_after", _positive(float)),
    ("cluster", "daemon-url"): ("daemon_url", str),
}


def load(path: Optional[str] = None, overrides: Optional[Mapping[str, Any]] = None) -> Settings:
    """Build Settings from the defaults, an optional INI file and flag overrides.

    Raises ConfigError naming the option (``[section] option``) for any bad value,
    unknown option or unreadable file.
    """
    values: dict[str, Any] = {}
    if path is not None:
        parser = configparser.ConfigParser(interpolation=None)
        try:
            with open(path, encoding="utf-8") as fh:
                parser.read_file(fh)
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
        except UnicodeDecodeError as exc:
            raise ConfigError(f"config file {path} is not UTF-8 text: {exc}") from exc
        except configparser.Error as exc:
            raise ConfigError(f"config file {path} is not valid INI: {exc}") from exc
        for section in parser.sections():
            for option, raw in parser.items(section):
                key = (section, option)
                if key not in OPTIONS:
                    raise ConfigError(f"[{section}] {option}: unknown option in {path}")
                name, convert = OPTIONS[key]
                try:
                    values[name] = convert(raw)
                except ValueError as exc:
                    raise ConfigError(f"[{section}] {option} = {raw!r}: {exc}") from exc
    for name, value in (overrides or {}).items():
        if value is not None:
            values[name] = value
    settings = Settings(**values)
    if settings.https and not (settings.tls_cert and settings.tls_key):
        raise ConfigError("[web] https = on needs cert and key (PEM files)")
    if settings.webhook_backoff_max < settings.webhook_backoff:
        raise ConfigError("[webhooks] backoff-max must be at least backoff")
    if not settings.python or not os.path.exists(settings.python):
        raise ConfigError(f"[crawld] python = {settings.python!r}: no such interpreter")
    return settings


def defaults_ini() -> str:
    """Every option set to its default, with comments: the INI text shipped in the package
    as ``defaults.ini`` (the same as the source tree's config.example.ini, which pip does
    not install), so an installed crawld can print it (``crawld config --defaults``)."""
    return importlib.resources.files(__package__).joinpath("defaults.ini").read_text(
        encoding="utf-8")
