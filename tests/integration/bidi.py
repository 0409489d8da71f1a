"""A small WebDriver BiDi client, for driving Debian's Firefox in the dashboard tests.

Playwright cannot drive Debian's ``firefox-esr`` (it needs its own patched build, which
the tests may not download), but Firefox speaks WebDriver BiDi itself (the W3C
protocol, on since Firefox 129): started with ``--remote-debugging-port`` it listens
for a WebSocket at ``ws://127.0.0.1:PORT/session``. This module starts it headless in a
throw-away profile, opens a session and offers what the tests use: navigate, evaluate
JavaScript (the result comes back as JSON), wait for a condition in the page, mouse
clicks and typing (``input.performActions``), screenshots, and the console's messages
(``log.entryAdded``), errors among them.

The commands and their shapes are the spec's (https://w3c.github.io/webdriver-bidi/):
``session.new``, ``session.subscribe``, ``browsingContext.getTree``/``navigate``/
``captureScreenshot``, ``script.evaluate``, ``input.performActions``, ``browser.close``.
"""
from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from typing import Any, Optional

from websockets.sync.client import ClientConnection, connect

from tests.conftest import wait_for

LISTENING_RE = re.compile(r"WebDriver BiDi listening on (ws://127\.0\.0\.1:\d+)")
#: Prefs of the throw-away profile: nothing fetched from Mozilla's servers, nothing asked.
PREFS = {
    "app.normandy.enabled": False,
    "app.update.disabledForTesting": True,
    "browser.shell.checkDefaultBrowser": False,
    "browser.startup.homepage_override.mstone": "ignore",
    "datareporting.policy.dataSubmissionEnabled": False,
    "messaging-system.rsexperimentloader.enabled": False,
    "network.captive-portal-service.enabled": False,
    "network.connectivity-service.enabled": False,
    "services.settings.server": "http://127.0.0.1:9/",  # remote settings: refused at once
    "toolkit.telemetry.server": "",
}


class BidiError(AssertionError):
    """A command the browser refused (its ``error`` and ``message``), or a script that
    threw."""


class Firefox:
    """A headless Firefox and one BiDi session with its first tab (``context``).

    ``console`` collects every ``log.entryAdded`` entry (dicts of the spec: ``level``,
    ``text``, ``type``...), ``errors()`` those of level ``error``."""

    def __init__(self, executable: str, timeout: float = 60.0) -> None:
        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix="crawld-firefox-")
        with open(os.path.join(self.profile, "user.js"), "w") as fh:
            for name, value in PREFS.items():
                fh.write(f"user_pref({json.dumps(name)}, {json.dumps(value)});\n")
        self.log_path = os.path.join(self.profile, "firefox.log")
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen(
                [executable, "--headless", "--remote-debugging-port=0",
                 "--profile", self.profile, "--no-remote"],
                stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        self.ids = itertools.count(1)
        self.console: list[dict] = []
        self.ws: Optional[ClientConnection] = None
        self.closing = contextlib.ExitStack()  # the WebSocket, closed by close()
        try:
            url = wait_for(self._listening, timeout, what="Firefox's WebDriver BiDi port")
            self.ws = self.closing.enter_context(connect(
                url + "/session", max_size=64 * 1024 * 1024, open_timeout=timeout))
            self.send("session.new", capabilities={"alwaysMatch": {"acceptInsecureCerts": True}})
            self.send("session.subscribe", events=["log.entryAdded"])
            self.context = self.send("browsingContext.getTree")["contexts"][0]["context"]
        except BaseException:
            self.close()
            raise

    def _listening(self) -> Optional[str]:
        if self.proc.poll() is not None:
            raise AssertionError(f"Firefox exited {self.proc.returncode}:\n{self.log()}")
        found = LISTENING_RE.search(self.log())
        return found.group(1) if found else None

    def log(self) -> str:
        """What Firefox printed."""
        with open(self.log_path, errors="replace") as fh:
            return fh.read()

    # -- the protocol -------------------------------------------------------------------
    def send(self, method: str, **params: Any) -> dict:
        """Run one command; its ``result``, or BidiError. Events that arrive meanwhile
        are kept (``console``)."""
        assert self.ws is not None
        number = next(self.ids)
        self.ws.send(json.dumps({"id": number, "method": method, "params": params}))
        deadline = time.monotonic() + self.timeout
        while True:
            message = json.loads(self.ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if message.get("type") == "event":
                self._event(message)
            elif message.get("id") == number:
                if message.get("type") == "error":
                    raise BidiError(f"{method}: {message['error']}: {message.get('message')}")
                return message["result"]

    def _event(self, message: dict) -> None:
        if message.get("method") == "log.entryAdded":
            self.console.append(message["params"])

    def pump(self) -> None:
        """Read the events that have arrived, without a command."""
        assert self.ws is not None
        while True:
            try:
                message = json.loads(self.ws.recv(timeout=0))
            except TimeoutError:
                return
            if message.get("type") == "event":
                self._event(message)

    # -- what the tests use -------------------------------------------------------------
    def navigate(self, url: str) -> None:
        """Load ``url`` in the tab and wait until its load event."""
        self.send("browsingContext.navigate", context=self.context, url=url, wait="complete")

    def js(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (awaited if a promise), as
        JSON makes it (undefined: None)."""
        wrapped = f"(async () => JSON.stringify(await ({expression})) ?? 'null')()"
        answer = self.send("script.evaluate", expression=wrapped, awaitPromise=True,
                           target={"context": self.context}, resultOwnership="none")
        if answer["type"] == "exception":
            details = answer["exceptionDetails"]
            raise BidiError(f"{expression!r} threw: {details.get('text')}")
        return json.loads(answer["result"]["value"])

    def click(self, selector: str) -> None:
        """Click the middle of the element ``selector`` finds (scrolled into view) with
        the mouse, as a user would: input.performActions, not a script's click()."""
        box = self.wait(f"""(() => {{
            const el = document.querySelector({json.dumps(selector)});
            if (!el) return null;
            el.scrollIntoView({{block: "center"}});
            const r = el.getBoundingClientRect();
            return r.width && r.height ? [r.x + r.width / 2, r.y + r.height / 2] : null;
            }})()""", what=f"{selector} to be shown")
        self.send("input.performActions", context=self.context, actions=[{
            "type": "pointer", "id": "mouse", "parameters": {"pointerType": "mouse"},
            "actions": [{"type": "pointerMove", "x": int(box[0]), "y": int(box[1])},
                        {"type": "pointerDown", "button": 0},
                        {"type": "pointerUp", "button": 0}]}])

    def type(self, text: str) -> None:
        """Type ``text`` on the keyboard into whatever has the focus."""
        keys = [{"type": kind, "value": char} for char in text
                for kind in ("keyDown", "keyUp")]
        self.send("input.performActions", context=self.context, actions=[{
            "type": "key", "id": "keyboard", "actions": keys}])

    def text(self, selector: str) -> str:
        """The text of the element ``selector`` finds ("" when there is none)."""
        return self.js(f"document.querySelector({json.dumps(selector)})?.textContent ?? ''")

    def wait(self, expression: str, what: str = "", timeout: Optional[float] = None) -> Any:
        """Poll a JavaScript expression until it is truthy; its value."""
        return wait_for(lambda: self.js(expression), timeout or self.timeout, interval=0.1,
                        what=what or expression)

    def screenshot(self, path: str) -> None:
        """A PNG of the tab's whole page (not only the viewport), saved as ``path``."""
        data = self.send("browsingContext.captureScreenshot", context=self.context,
                         origin="document")["data"]
        with open(path, "wb") as fh:
            fh.write(base64.b64decode(data))

    def errors(self) -> list[dict]:
        """The console entries of level ``error`` so far (uncaught exceptions too)."""
        self.pump()
        return [e for e in self.console if e.get("level") == "error"]

    def close(self) -> None:
        """End the browser (browser.close, then a kill if it lingers) and its profile."""
        try:
            if self.ws is not None:
                try:
                    self.send("browser.close")
                except Exception:  # noqa: BLE001 - it may be gone before it answers
                    pass
            self.closing.close()
        finally:
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
            shutil.rmtree(self.profile, ignore_errors=True)
