"""The client commands of ``crawld``: status, push, schedule, jobs, logs, cancel, wait.

They talk to a running daemon over HTTP (``client.Client``): the URL and API key come
from ``--url``/``--key`` or ``CRAWLD_URL``/``CRAWLD_KEY``. Answers are human tables, or
the daemon's JSON with ``--json`` for scripts. Exit codes (``EXIT``) let a script tell a
failed job from an unreachable daemon.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, Callable, Optional, Sequence, TextIO

from .client import Client, ClientError, Upload
from .projectzip import PackError, pack

#: What a client command's exit code means.
EXIT = {
    "ok": 0,            # done; a waited job ended SUCCESSFUL
    "failed": 1,        # a waited job ended FAILED
    "usage": 2,         # a bad command line (argparse's own code)
    "refused": 3,       # the daemon answered with an error (bad input, unknown job, 401...)
    "unreachable": 4,   # no answer from the daemon
    "canceled": 5,      # a waited job ended CANCELED
    "timeout": 6,       # wait --timeout ran out before the job ended
}
COMMANDS = ("status", "push", "schedule", "jobs", "logs", "cancel", "wait")
ENDED = {"SUCCESSFUL": "ok", "FAILED": "failed", "CANCELED": "canceled"}
WAIT_SLICE = 30  # seconds of each wait= the daemon is asked for


class UsageError(Exception):
    """A client command's arguments do not make sense (exit code 2)."""


def register(sub: Any) -> None:
    """Add the client commands to ``crawld``'s subcommands."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", help="the daemon (default $CRAWLD_URL, else "
                        "http://127.0.0.1:7654)")
    common.add_argument("--key", help="API key (default $CRAWLD_KEY)")
    common.add_argument("--json", action="store_true",
                        help="print the daemon's JSON answer instead of a table")
    add = lambda name, text: sub.add_parser(name, parents=[common], help=text,  # noqa: E731
                                            description=text + ".")
    add("status", "show a running daemon's status")
    push = add("push", "zip a project folder and push it as the project's new version")
    push.add_argument("folder", nargs="?", default=".",
                      help="the folder holding scrapy.cfg (default: this one)")
    sched = add("schedule", "schedule a spider (or a browser script) now or on a schedule")
    sched.add_argument("project")
    sched.add_argument("spider")
    sched.add_argument("--when", default="now",
                       help="now, 'every 10 minutes', 'every monday at 12:30', cron...")
    sched.add_argument("--script", action="store_true",
                       help="SPIDER names a browser script of the project")
    sched.add_argument("--arg", action="append", default=[], metavar="NAME=VALUE",
                       help="a spider argument (-a), repeatable")
    sched.add_argument("--setting", action="append", default=[], metavar="NAME=VALUE",
                       help="a Scrapy setting (-s), repeatable")
    for name in ("description", "tz", "fail-on", "payload"):
        sched.add_argument(f"--{name}")
    sched.add_argument("--wait", action="store_true",
                       help="wait for a 'now' job to end (exit code as 'crawld wait')")
    jobs = add("jobs", "list jobs, newest change first")
    jobs.add_argument("--status", default="ACTIVE",
                      help="ACTIVE (default), COMPLETED, or one status (RUNNING, FAILED...)")
    jobs.add_argument("--project")
    jobs.add_argument("--spider")
    jobs.add_argument("--limit", type=int, default=50)
    jobs.add_argument("--offset", type=int, default=0)
    logs = add("logs", "print a job's log (stdout; --err: stderr)")
    logs.add_argument("id")
    logs.add_argument("--err", action="store_true", help="the job's stderr (Scrapy's log)")
    logs.add_argument("-f", "--follow", action="store_true",
                      help="keep printing while the job runs, like tail -f")
    logs.add_argument("--tail", type=int, metavar="BYTES",
                      help="only the last BYTES of the log")
    cancel = add("cancel", "cancel a job or a schedule")
    cancel.add_argument("id")
    wait = add("wait", "wait until a job ends; the exit code says how it ended")
    wait.add_argument("id")
    wait.add_argument("--timeout", type=float, help="give up after this many seconds")


def run(args: argparse.Namespace, out: Optional[TextIO] = None,
        err: Optional[TextIO] = None, clock: Callable[[], float] = time.monotonic) -> int:
    """Run one client command; its exit code (see ``EXIT``). Output goes to ``out`` and
    ``err`` (default: the process's stdout and stderr at the time of the call)."""
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        client = Client.from_env(args.url, args.key)
        return _COMMANDS[args.command](client, args, out, err, clock)
    except ClientError as exc:
        print(f"crawld: {exc}", file=err)
        return EXIT["unreachable" if exc.status is None else "refused"]
    except (PackError, UsageError) as exc:
        print(f"crawld: {exc}", file=err)
        return EXIT["usage"]


# -- the commands ----------------------------------------------------------------------
def _status(client: Client, args: argparse.Namespace, out: TextIO, err: TextIO,
            clock: Callable[[], float]) -> int:
    answer = client.get("/status.json")
    if args.json:
        return _dump(answer, out)
    for key, value in answer.items():
        if key != "status":
            print(f"{key + ':':<20} {value}", file=out)
    return EXIT["ok"]


def _push(client: Client, args: argparse.Namespace, out: TextIO, err: TextIO,
          clock: Callable[[], float]) -> int:
    name, data = pack(args.folder)
    show = _progress(err, f"pushing {name}")
    answer = client.upload("/push-project.json", Upload("archive", f"{name}.zip", data),
                           progress=show)
    show(None, None)
    if args.json:
        return _dump(answer, out)
    print(f"pushed {answer['name']}: spiders: {', '.join(answer['spiders']) or '-'}"
          + (f"; scripts: {', '.join(answer['scripts'])}" if answer.get("scripts") else ""),
          file=out)
    return EXIT["ok"]


def _schedule(client: Client, args: argparse.Namespace, out: TextIO, err: TextIO,
              clock: Callable[[], float]) -> int:
    fields: list[tuple[str, Any]] = [("project", args.project),
                                     ("script" if args.script else "spider", args.spider),
                                     ("when", args.when)]
    for name in ("description", "tz", "fail_on", "payload"):
        fields.append((name.replace("_", "-"), getattr(args, name)))
    for pair in args.arg:
        key, value = _pair(pair, "--arg")
        fields.append((f"arg-{key}", value))
    fields += [("setting", "=".join(_pair(pair, "--setting"))) for pair in args.setting]
    if args.wait and args.when != "now":
        raise UsageError("--wait waits for 'now' jobs only")
    answer = client.post("/schedule-job.json", fields)
    if args.wait:
        if not args.json:
            print(answer["identifier"], file=out)
        return _wait_for(client, answer["identifier"], None, args.json, out, err, clock)
    if args.json:
        return _dump(answer, out)
    print(answer["identifier"], file=out)
    return EXIT["ok"]


def _jobs(client: Client, args: argparse.Namespace, out: TextIO, err: TextIO,
          clock: Callable[[], float]) -> int:
    answer = client.get("/list-jobs.json", {
        "status": args.status.upper(), "project": args.project, "spider": args.spider,
        "limit": args.limit, "offset": args.offset or None})
    if args.json:
        return _dump(answer, out)
    rows = [(j["identifier"], j["status"], j["project"], j["spider"],
             _short(j.get("started") or j.get("next-run") or j.get("created")),
             "" if j.get("duration") is None else f"{j['duration']}s",
             j.get("reason") or j.get("description") or "") for j in answer["jobs"]]
    _table(("ID", "STATUS", "PROJECT", "SPIDER", "STARTED/NEXT", "TOOK", "REASON"),
           rows, out)
    return EXIT["ok"]


def _logs(client: Client, args: argparse.Namespace, out: TextIO, err: TextIO,
          clock: Callable[[], float]) -> int:
    path = f"/get-log/data/{args.id}.{'err' if args.err else 'out'}"
    params = {"follow": "1" if args.follow else "0",
              "offset": None if args.tail is None else -abs(args.tail)}
    sink = getattr(out, "buffer", None)
    for chunk in client.stream(path, params):
        if sink is not None:
            sink.write(chunk)
            sink.flush()
        else:
            out.write(chunk.decode("utf-8", "replace"))
    return EXIT["ok"]


def _cancel(client: Client, args: argparse.Namespace, out: TextIO, err: TextIO,
            clock: Callable[[], float]) -> int:
    answer = client.post("/cancel-job.json", {"id": args.id})
    if args.json:
        return _dump(answer, out)
    print(f"{answer['identifier']}: {answer['job-status']}", file=out)
    return EXIT["ok"]


def _wait(client: Client, args: argparse.Namespace, out: TextIO, err: TextIO,
          clock: Callable[[], float]) -> int:
    return _wait_for(client, args.id, args.timeout, args.json, out, err, clock)


def _wait_for(client: Client, job_id: str, timeout: Optional[float], as_json: bool,
              out: TextIO, err: TextIO, clock: Callable[[], float]) -> int:
    """Ask the daemon to hold the answer until the job ends (``wait=``), slice by slice,
    showing the job's status and age meanwhile; a daemon that answers at once (no
    ``wait=``) is polled once a second."""
    begun = clock()
    show = _progress(err, f"waiting for {job_id}")
    while True:
        left = None if timeout is None else timeout - (clock() - begun)
        if left is not None and left <= 0:
            show(None, None)
            print(f"crawld: {job_id} had not ended after {timeout:g} s", file=err)
            return EXIT["timeout"]
        hold = WAIT_SLICE if left is None else max(1, min(WAIT_SLICE, int(left)))
        asked = clock()
        job = client.get("/list-jobs.json", {"id": job_id, "wait": hold},
                         timeout=hold + 30)["jobs"][0]
        if job["status"] in ENDED:
            show(None, None)
            if as_json:
                _dump(job, out)
            else:
                print(f"{job_id}: {job['status']}"
                      + (f" ({job['reason']})" if job.get("reason") else ""), file=out)
            return EXIT[ENDED[job["status"]]]
        show(job["status"], int(clock() - begun))
        if clock() - asked < 1:
            time.sleep(1)  # the daemon did not hold the answer: poll, gently


# -- output ----------------------------------------------------------------------------
def _progress(err: TextIO, what: str) -> Callable[[Any, Any], None]:
    """A one-line progress display on a terminal (nothing when stderr is not one);
    call it with (None, None) to clear the line."""
    live = getattr(err, "isatty", lambda: False)()

    def show(done: Any, total: Any) -> None:
        if not live:
            return
        if done is None:
            err.write("\r\033[K")
        elif isinstance(done, int) and isinstance(total, int):
            err.write(f"\r\033[K{what}: {done * 100 // max(total, 1)}% "
                      f"({_size(done)} of {_size(total)})")
        else:
            err.write(f"\r\033[K{what}: {done}, {total} s")
        err.flush()
    return show


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.0f} kB"


def _short(iso: Optional[str]) -> str:
    """``2026-11-26T12:30:05.123+01:00`` as ``2026-11-26 12:30:05``."""
    return "" if not iso else iso.replace("T", " ")[:19]


def _pair(text: str, flag: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise UsageError(f"{flag} takes NAME=VALUE, not {text!r}")
    return key, value


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]], out: TextIO) -> None:
    """Left-aligned columns; the last one is not padded."""
    widths = [max([len(h)] + [len(str(r[i])) for r in rows]) for i, h in enumerate(headers)]
    for row in [headers, *rows]:
        cells = [str(c).ljust(w) for c, w in zip(row[:-1], widths)] + [str(row[-1])]
        print("  ".join(cells).rstrip(), file=out)


def _dump(answer: Any, out: TextIO) -> int:
    print(json.dumps(answer, indent=2), file=out)
    return EXIT["ok"]


_COMMANDS = {"status": _status, "push": _push, "schedule": _schedule, "jobs": _jobs,
             "logs": _logs, "cancel": _cancel, "wait": _wait}
