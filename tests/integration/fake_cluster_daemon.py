"""A minimal stand-in for the daemon's ``/cluster/*`` routes, for the worker's tests.

Run as ``python fake_cluster_daemon.py CODE_DIR KEY HEARTBEAT [CERT KEYFILE]`` on a free
loopback port (it prints ``listening on http(s)://127.0.0.1:PORT``; https with CERT). It implements the contract of
docs/cluster.md as the worker sees it: claims (first wins, 409 after), code zips by
hash from ``CODE_DIR/<hash>.zip``, output held per stream by offset (409 with the held
offset for a gap), stats, heartbeats answering pending signals, refusals, messages and screenshot
requests (whose uploads it keeps), ends
accepted only once every byte is held. The test drives it through ``/test/*``: register
an attempt, ask for a signal or a refusal, read everything it received.
"""
from __future__ import annotations

import json
import os
import sys
from typing import Any
from urllib.parse import parse_qs, urlparse

from twisted.internet import reactor
from twisted.web import resource, server


class State:
    def __init__(self, code_dir: str, key: str, heartbeat: float) -> None:
        self.code_dir = code_dir
        self.key = key
        self.heartbeat = heartbeat
        self.jobs: dict[str, dict] = {}        # job id -> {"job", "attempt", "code"}
        self.claims: dict[str, str] = {}       # key -> worker
        self.claim_calls: dict[str, int] = {}
        self.started: dict[str, dict] = {}
        self.held: dict[str, bytearray] = {}   # "key stream" -> bytes
        self.stats: dict[str, Any] = {}
        self.ends: dict[str, dict] = {}
        self.end_calls: dict[str, int] = {}
        self.heartbeats: list[dict] = []
        self.beats = 0
        self.signals: dict[str, int] = {}
        self.refused: set[str] = set()
        self.fetches: dict[str, int] = {}
        self.output_calls = 0
        self.messages: dict[str, list] = {}   # key -> messages for the next beat
        self.shot_requests: dict[str, list] = {}  # key -> screenshot requests, next beat
        self.shots: dict[str, dict] = {}      # "key req" -> {"data" | "error"} uploaded
        self.down = False                      # /test/down: every /cluster call gets 503

    def current(self, key: str) -> bool:
        job_id, _, number = key.rpartition("/")
        entry = self.jobs.get(job_id)
        return (entry is not None and str(entry["attempt"]) == number
                and key not in self.refused and key not in self.ends)

    def view(self) -> dict:
        return {
            "claims": self.claims, "claim_calls": self.claim_calls,
            "started": self.started, "stats": self.stats, "ends": self.ends,
            "end_calls": self.end_calls, "beats": self.beats,
            "last_beats": self.heartbeats[-5:], "fetches": self.fetches,
            "output_calls": self.output_calls,
            "shots": {k: {"size": len(v["data"]) if v["data"] is not None else None,
                          "head": (v["data"] or b"")[:24].decode("latin-1"),
                          "error": v["error"]} for k, v in self.shots.items()},
            "held": {k: bytes(v).decode("latin-1") for k, v in self.held.items()},
        }


class Api(resource.Resource):
    isLeaf = True

    def __init__(self, state: State) -> None:
        super().__init__()
        self.s = state

    def answer(self, request: Any, code: int, body: dict) -> bytes:
        request.setResponseCode(code)
        request.setHeader(b"content-type", b"application/json")
        if code == 200:
            body = {"status": "ok", **body, "heartbeat": self.s.heartbeat, "lost_after": 15}
        else:
            body = {"status": "error", **body}
        return json.dumps(body).encode()

    def render_GET(self, request: Any) -> bytes:
        path = request.path.decode()
        if path == "/test/state":
            return self.answer(request, 200, {"state": self.s.view()})
        if not self.authorized(request):
            return self.answer(request, 403, {"msg": "forbidden"})
        if path.startswith("/cluster/code/") and path.endswith(".zip"):
            digest = path[len("/cluster/code/"):-4]
            target = os.path.join(self.s.code_dir, f"{digest}.zip")
            if not os.path.isfile(target):
                return self.answer(request, 404, {"msg": "unknown code"})
            self.s.fetches[digest] = self.s.fetches.get(digest, 0) + 1
            request.setHeader(b"content-type", b"application/zip")
            with open(target, "rb") as fh:
                return fh.read()
        return self.answer(request, 404, {"msg": "no such route"})

    def authorized(self, request: Any) -> bool:
        return request.getHeader(b"authorization") == f"Bearer {self.s.key}".encode()

    def render_POST(self, request: Any) -> bytes:
        path = urlparse(request.uri.decode()).path
        raw = request.content.read()
        if path.startswith("/test/"):
            return self.control(request, path, json.loads(raw))
        if self.s.down:
            return self.answer(request, 503, {"msg": "down for the test"})
        if not self.authorized(request):
            return self.answer(request, 403, {"msg": "forbidden"})
        if path == "/cluster/output":
            return self.output(request, raw)
        if path == "/cluster/file":
            return self.file(request, raw)
        if path == "/cluster/screenshot":
            return self.screenshot(request, raw)
        body = json.loads(raw)
        handler = {"/cluster/claim": self.claim, "/cluster/started": self.started_,
                   "/cluster/stats": self.stats_, "/cluster/heartbeat": self.beat,
                   "/cluster/ended": self.ended}.get(path)
        if handler is None:
            return self.answer(request, 404, {"msg": "no such route"})
        return handler(request, body)

    def control(self, request: Any, path: str, body: dict) -> bytes:
        if path == "/test/job":
            self.s.jobs[body["job"]["id"]] = body
        elif path == "/test/signal":
            self.s.signals[body["key"]] = body["sig"]
        elif path == "/test/refuse":
            self.s.refused.add(body["key"])
        elif path == "/test/message":
            self.s.messages.setdefault(body["key"], []).append(body["data"])
        elif path == "/test/screenshot":
            self.s.shot_requests.setdefault(body["key"], []).append(
                {"req": body["req"], "full_page": body["full_page"]})
        elif path == "/test/down":
            self.s.down = body["down"]
        elif path == "/test/forget":  # as a daemon that lost what it held of an attempt
            for name in [n for n in self.s.held if n.startswith(body["key"] + " ")]:
                del self.s.held[name]
        return self.answer(request, 200, {})

    def claim(self, request: Any, body: dict) -> bytes:
        key = f"{body['job']}/{body['attempt']}"
        self.s.claim_calls[key] = self.s.claim_calls.get(key, 0) + 1
        if not self.s.current(key):
            return self.answer(request, 409, {"msg": f"attempt {key} is not the job's "
                                              "current attempt"})
        if key in self.s.claims:
            return self.answer(request, 409, {"msg": f"attempt {key} was already claimed "
                                              f"by worker {self.s.claims[key]}"})
        self.s.claims[key] = body["worker"]
        entry = self.s.jobs[body["job"]]
        code = entry.get("code")
        return self.answer(request, 200, {"job": entry["job"], "code": code and {
            "project": entry["job"]["project"], "version": "1", "hash": code}})

    def started_(self, request: Any, body: dict) -> bytes:
        if self.s.claims.get(body["key"]) != body["worker"]:
            return self.answer(request, 409, {"msg": "not yours"})
        self.s.started[body["key"]] = body
        return self.answer(request, 200, {})

    def output(self, request: Any, data: bytes) -> bytes:
        query = parse_qs(urlparse(request.uri.decode()).query)
        key, stream, offset = query["key"][0], query["stream"][0], int(query["offset"][0])
        self.s.output_calls += 1
        if not self.s.current(key):
            return self.answer(request, 409, {"msg": f"attempt {key} is not current"})
        held = self.s.held.setdefault(f"{key} {stream}", bytearray())
        if offset > len(held):
            return self.answer(request, 409, {"msg": "gap", "offset": len(held)})
        held[offset:offset + len(data)] = data
        return self.answer(request, 200, {"offset": len(held)})

    def file(self, request: Any, data: bytes) -> bytes:
        """A saved file's chunk, held as the stream "file:NAME"; 413 past 64 bytes."""
        query = parse_qs(urlparse(request.uri.decode()).query)
        key, name, offset = query["key"][0], query["name"][0], int(query["offset"][0])
        if not self.s.current(key):
            return self.answer(request, 409, {"msg": f"attempt {key} is not current"})
        held = self.s.held.setdefault(f"{key} file:{name}", bytearray())
        if offset > len(held):
            return self.answer(request, 409, {"msg": "gap", "offset": len(held)})
        if offset + len(data) > 64:
            return self.answer(request, 413, {"msg": "a file is at most 64 bytes here"})
        held[offset:offset + len(data)] = data
        return self.answer(request, 200, {"offset": len(held)})

    def screenshot(self, request: Any, data: bytes) -> bytes:
        """A live screenshot's PNG (or ``error``), kept as "KEY REQ"."""
        query = parse_qs(urlparse(request.uri.decode()).query)
        key, req = query["key"][0], int(query["req"][0])
        if not self.s.current(key):
            return self.answer(request, 409, {"msg": f"attempt {key} is not current"})
        error = query.get("error", [None])[0]
        self.s.shots[f"{key} {req}"] = {"data": None if error else data, "error": error}
        return self.answer(request, 200, {})

    def stats_(self, request: Any, body: dict) -> bytes:
        if not self.s.current(body["key"]):
            return self.answer(request, 409, {"msg": "not current"})
        self.s.stats[body["key"]] = body["stats"]
        return self.answer(request, 200, {})

    def beat(self, request: Any, body: dict) -> bytes:
        self.s.beats += 1
        self.s.heartbeats.append(body)
        del self.s.heartbeats[:-20]
        keys = {a["key"] for a in body["attempts"]}
        return self.answer(request, 200, {
            "signal": {k: v for k, v in self.s.signals.items() if k in keys},
            "refuse": sorted(k for k in keys if k in self.s.refused),
            "messages": {k: self.s.messages.pop(k) for k in list(self.s.messages)
                         if k in keys},
            "screenshots": {k: self.s.shot_requests.pop(k)
                            for k in list(self.s.shot_requests) if k in keys}})

    def ended(self, request: Any, body: dict) -> bytes:
        key = body["key"]
        self.s.end_calls[key] = self.s.end_calls.get(key, 0) + 1
        if key in self.s.ends:
            return self.answer(request, 200, {})
        if not self.s.current(key):
            return self.answer(request, 409, {"msg": "not current"})
        held = {s: len(self.s.held.get(f"{key} {s}", b"")) for s in body["offsets"]}
        if any(held[s] < n for s, n in body["offsets"].items()):
            return self.answer(request, 409, {"msg": "missing bytes", "offsets": held})
        self.s.ends[key] = body
        return self.answer(request, 200, {})


def main() -> None:
    code_dir, key, heartbeat = sys.argv[1], sys.argv[2], float(sys.argv[3])
    site = server.Site(Api(State(code_dir, key, heartbeat)))
    site.noisy = False
    if len(sys.argv) > 5:
        from twisted.internet import ssl
        with open(sys.argv[4]) as cert, open(sys.argv[5]) as key:
            options = ssl.PrivateCertificate.loadPEM(key.read() + cert.read()).options()
        port = reactor.listenSSL(0, site, options, interface="127.0.0.1")
        scheme = "https"
    else:
        port = reactor.listenTCP(0, site, interface="127.0.0.1")
        scheme = "http"
    print(f"listening on {scheme}://127.0.0.1:{port.getHost().port}", flush=True)
    reactor.run()


if __name__ == "__main__":
    main()
