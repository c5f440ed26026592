"""The HTML report opens in a real browser: plots render, no console errors.

Headless Chromium is driven through the DevTools protocol over a pipe
(``tests/chromium.py``), so the test needs nothing beyond the standard library. Bokeh
draws into canvases inside shadow roots, which ``--dump-dom`` cannot see; the page's
own JavaScript walks them and reads their pixels instead.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from chromium import CHROMIUM, MISSING, DevTools, console_errors

from vi.cli import main

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason=MISSING)

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


def _panels(canvases: list[dict]) -> list[dict]:
    """The canvases drawn on and larger than 50 x 50 pixels (the plots' own)."""
    return [c for c in canvases if c["drawn"] and c["width"] > 50 and c["height"] > 50]


def _open(devtools: DevTools, url: str) -> tuple[list[dict], str]:
    """Load ``url``; return its canvases once bokeh has drawn (or after 30 s) and its text."""
    session = devtools.new_page(url)
    deadline = time.monotonic() + 30
    canvases: list[dict] = []
    while time.monotonic() < deadline:
        result = devtools.call("Runtime.evaluate", session, expression=CANVASES_JS,
                               returnByValue=True)["result"]
        canvases = result.get("value") or []
        # bokeh's small canvases (toolbar, hidden ones) may stay blank: wait for the
        # three panels only
        if len(_panels(canvases)) >= 3:
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
    drawn = _panels(canvases)
    assert len(drawn) >= 3, f"expected >= 3 drawn canvases, got {canvases}"
    assert "KL(q || p)" in text and "planar*2" in text
    assert console_errors(devtools.events) == []
