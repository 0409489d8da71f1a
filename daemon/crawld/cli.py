"""``crawld serve``: the one place that imports the global reactor and runs it; and
``crawld config --defaults``, which prints the embedded defaults as an INI file.

``serve`` runs in the foreground and logs to stderr, as systemd/journald expect. Flags
override the config file, which overrides the embedded defaults.
"""
from __future__ import annotations

import argparse
import sys
from datetime import datetime
from typing import Any, Optional, Sequence

from . import __version__, config, keys
from .errors import ConfigError

LEVELS = ("debug", "info", "warn", "error")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="crawld", description="A crawl daemon: schedules "
                                     "and supervises Scrapy spiders; scrapy-do compatible.")
    parser.add_argument("--version", action="version", version=f"crawld {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the daemon in the foreground")
    serve.add_argument("--config", metavar="FILE", help="INI file ('crawld config "
                       "--defaults' prints every option with its default)")
    serve.add_argument("--listen", metavar="HOST:PORT", action="append",
                       help="address to listen on (repeatable; default 127.0.0.1:7654)")
    serve.add_argument("--data-dir", metavar="DIR",
                       help="where the database, projects and logs live (default ./crawld-data)")
    serve.add_argument("--job-slots", metavar="N", type=int,
                       help="jobs that may run at once (default 4 per CPU)")
    serve.add_argument("--reinit", action="store_true",
                       help="start although crawld.db is missing, empty or damaged while "
                       "the data directory holds projects or logs of an earlier crawld "
                       "(crawld refuses to, without this flag): make a new database and "
                       "register again the projects found in projects/<name>/<version>/ "
                       "(the highest version, listed again). Schedules, job history and "
                       "counters cannot be rebuilt; a damaged crawld.db is kept aside. "
                       "Restoring a backup is better when you have one")
    show = sub.add_parser("config", help="print the built-in defaults as a commented INI file",
                          description="Print every option of the INI file, with comments, "
                          "set to its default: a file to start from ('crawld config "
                          "--defaults > crawld.ini').")
    show.add_argument("--defaults", action="store_true", required=True,
                      help="print the built-in defaults as an INI file")
    keys.register(sub)  # crawld keys ... / crawld users ...
    return parser


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    try:
        listen = tuple(config.parse_listen(t) for t in args.listen) if args.listen else None
    except ValueError as exc:
        raise ConfigError(f"--listen: {exc}") from exc
    if args.job_slots is not None and args.job_slots < 0:
        raise ConfigError("--job-slots: must be zero or more")
    return {"listen": listen, "data_dir": args.data_dir, "job_slots": args.job_slots}


def _start_logging(level: str) -> None:
    from twisted.logger import (FilteringLogObserver, LogLevel, LogLevelFilterPredicate,
                                formatEvent, globalLogBeginner)

    def emit(event: dict) -> None:
        text = formatEvent(event)
        if event.get("log_failure") is not None:
            text += "\n" + event["log_failure"].getTraceback()
        when = datetime.fromtimestamp(event.get("log_time", 0)).isoformat(timespec="seconds")
        name = event.get("log_namespace", "-")
        lvl = event["log_level"].name if event.get("log_level") else "info"
        sys.stderr.write(f"{when} {lvl:<5} {name}: {text}\n")
        sys.stderr.flush()

    predicate = LogLevelFilterPredicate(defaultLogLevel=LogLevel.levelWithName(level))
    globalLogBeginner.beginLoggingTo([FilteringLogObserver(emit, [predicate])],
                                     redirectStandardIO=False)


def serve(settings: config.Settings, reinit: bool = False) -> int:
    """Run a daemon until SIGTERM/SIGINT; returns the process exit code. ``reinit``:
    rebuild a lost database from the data directory (``--reinit``, see datadir.py)."""
    from twisted.internet import reactor
    from twisted.logger import Logger

    from .service import Daemon

    log = Logger(namespace="crawld")
    _start_logging(settings.log_level)
    daemon = Daemon(settings, reactor, reinit=reinit)
    code = [0]

    def failed(failure: Any) -> None:
        if failure.check(ConfigError):
            log.error("{msg}", msg=str(failure.value))
            code[0] = 2
        else:
            log.failure("crawld could not start", failure)
            code[0] = 1
        reactor.stop()

    reactor.callWhenRunning(lambda: daemon.start().addErrback(failed))
    reactor.addSystemEventTrigger("before", "shutdown", daemon.stop)
    reactor.run()
    return code[0]


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "config":
        sys.stdout.write(config.defaults_ini())
        return 0
    if args.command in keys.COMMANDS:
        return keys.run(args)
    try:
        settings = config.load(args.config, _overrides(args))
    except ConfigError as exc:
        print(f"crawld: configuration error: {exc}", file=sys.stderr)
        return 2
    return serve(settings, reinit=args.reinit)


if __name__ == "__main__":
    sys.exit(main())
