"""The HTML report opens in a real browser: plots render, no console errors.

Headless Chromium is driven through the DevTools protocol over a pipe
(``--remote-debugging-pipe``: JSON messages ending in NUL on file descriptors 3
and 4), so the test needs nothing beyond the standard library. Bokeh draws into
canvases inside shadow roots, which ``--dump-dom`` cannot see; the page's own
JavaScript walks them and reads their pixels instead.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from vi.cli import main

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="Debian's chromium is not installed (.ci/run installs it; "
           "apt-get install chromium) so the report cannot be opened in a browser")

# Every canvas, in the document and in every (open) shadow root, with whether its
# pixels differ from its first pixel: a blank canvas is one colour throughout.
CANVASES_JS = """
(() => {
  const found = [];
  const walk = (root) => root.querySelectorAll('*').forEach((el) => {
    if (el.tagName === 'CANVAS') found.push(el);
    if (el.shadowRoot) walk(el.shadowRoot);
  });
  walk(document);
  return found.map((c) => {
    let drawn = false;
    if (c.width > 0 && c.height > 0) {
      const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
      for (let i = 4; i < d.length && !drawn; i += 4) {
        drawn = d[i] !== d[0] || d[i + 1] !== d[1] || d[i + 2] !== d[2] || d[i + 3] !== d[3];
      }
    }
    return {width: c.width, height: c.height, drawn};
  });
})()
"""


# The visible text of the page, shadow roots included (bokeh's Div lives in one).
TEXT_JS = """
(() => {
  const parts = [];
  const walk = (root) => root.querySelectorAll('*').forEach((el) => {
    if (el.shadowRoot) { parts.push(el.shadowRoot.textContent); walk(el.shadowRoot); }
  });
  walk(document);
  return parts.join(' ');
})()
"""


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


def _errors(events: list[dict]) -> list[str]:
    """Uncaught exceptions, console.error calls and error log entries of the page."""
    errors = []
    for event in events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            errors.append(details.get("exception", {}).get("description", details["text"]))
        elif method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
            errors.append(" ".join(str(a.get("value", a.get("description")))
                                   for a in params["args"]))
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            entry = params["entry"]
            if entry.get("url", "").endswith("/favicon.ico"):
                continue  # the browser's own request, not the page's
            errors.append(f"{entry['text']} {entry.get('url', '')}".strip())
    return errors


def _open(devtools: DevTools, url: str) -> tuple[list[dict], str]:
    """Load ``url``; return its canvases once bokeh has drawn (or after 30 s) and its text."""
    target = devtools.call("Target.createTarget", url="about:blank")["targetId"]
    session = devtools.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
    for domain in ("Runtime", "Page", "Log"):
        devtools.call(f"{domain}.enable", session)
    devtools.call("Page.navigate", session, url=url)
    deadline = time.monotonic() + 30
    canvases: list[dict] = []
    while time.monotonic() < deadline:
        result = devtools.call("Runtime.evaluate", session, expression=CANVASES_JS,
                               returnByValue=True)["result"]
        canvases = result.get("value") or []
        if len(canvases) >= 3 and all(c["drawn"] for c in canvases):
            break
        time.sleep(0.5)
    text = devtools.call("Runtime.evaluate", session, expression=TEXT_JS,
                         returnByValue=True)["result"]["value"]
    return canvases, text


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report")
    assert main(["fit", "pot1", "--flow", "planar*2", "--steps", "300", "--n-mc", "4",
                 "--no-progress", "--out", str(out)]) == 0
    return out / "report.html"


def test_report_renders_in_chromium_without_console_errors(report, tmp_path):
    html = report.read_text()
    assert "<script src=" not in html  # standalone: every script inlined, no network
    devtools = DevTools(tmp_path / "profile")
    try:
        canvases, text = _open(devtools, report.resolve().as_uri())
    finally:
        devtools.close()
    # target, fit and loss panels: each a bokeh plot with a canvas that has been drawn on
    drawn = [c for c in canvases if c["drawn"] and c["width"] > 50 and c["height"] > 50]
    assert len(drawn) >= 3, f"expected >= 3 drawn canvases, got {canvases}"
    assert "KL(q || p)" in text and "planar*2" in text
    assert _errors(devtools.events) == []
