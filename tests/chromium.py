"""Headless Chromium driven over the DevTools protocol, for the browser tests.

The browser is started with ``--remote-debugging-pipe``: it reads JSON commands ending
in NUL on file descriptor 3 and writes replies and events on descriptor 4, so the
tests need nothing beyond the standard library. Used by ``test_browser.py`` (the HTML
report) and ``test_docs.py`` (the documentation site).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
MISSING = ("Debian's chromium is not installed (.ci/run installs it; apt-get install "
           "chromium), so pages cannot be opened in a browser")


class DevTools:
    """A minimal DevTools-protocol client for a headless Chromium over a pipe."""

    def __init__(self, profile: Path):
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()

        # The browser reads commands on fd 3 and writes replies and events on fd 4;
        # bash puts the pipe ends there (dash takes single-digit fds only; no preexec_fn:
        # forking JAX's threads is unsafe).
        command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                   "--no-first-run", "--disable-background-networking",
                   "--disable-component-update", "--disable-sync",
                   f"--user-data-dir={profile}", "--remote-debugging-pipe", "about:blank"]
        self.proc = subprocess.Popen(
            ["bash", "-c", f'exec "$@" 3<&{to_browser_r} 4>&{from_browser_w}', "bash", *command],
            pass_fds=(to_browser_r, from_browser_w),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict] = []

    def _read_message(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            if time.monotonic() > deadline:
                raise TimeoutError("chromium did not answer in time")
            chunk = os.read(self._from_browser, 1 << 16)
            if not chunk:
                raise RuntimeError("chromium closed the DevTools pipe")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def call(self, method: str, session: str | None = None, timeout: float = 60, **params):
        """Send a command and return its result; events that arrive meanwhile are kept."""
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
            self.events.append(reply)

    def new_page(self, url: str) -> str:
        """Open ``url`` in a new tab with its console and log reported; its session id."""
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Runtime", "Page", "Log"):
            self.call(f"{domain}.enable", session)
        self.call("Page.navigate", session, url=url)
        return session

    def evaluate(self, session: str, expression: str):
        """The value of a JavaScript expression in the page (``None`` if it has none)."""
        result = self.call("Runtime.evaluate", session, expression=expression,
                           returnByValue=True)["result"]
        return result.get("value")

    def wait_for(self, session: str, expression: str, timeout: float = 30):
        """Poll ``expression`` until it is truthy; its last value (falsy on timeout)."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(session, expression)
            if value or time.monotonic() > deadline:
                return value
            time.sleep(0.2)

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout=10)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_browser)
        os.close(self._from_browser)


def console_errors(events: list[dict], session: str | None = None) -> list[dict]:
    """Uncaught exceptions, console.error calls and error log entries, as
    ``{"text": ..., "url": ...}``, of one page (``session``) or of all."""
    errors = []
    for event in events:
        if session is not None and event.get("sessionId") != session:
            continue
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            errors.append({"text": details.get("exception", {}).get("description",
                                                                     details["text"]),
                           "url": details.get("url", "")})
        elif method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
            errors.append({"text": " ".join(str(a.get("value", a.get("description")))
                                            for a in params["args"]), "url": ""})
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            entry = params["entry"]
            if entry.get("url", "").endswith("/favicon.ico"):
                continue  # the browser's own request, not the page's
            errors.append({"text": entry["text"], "url": entry.get("url", "")})
    return errors
