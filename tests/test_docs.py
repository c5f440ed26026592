"""The documentation site builds without a warning and reads well in a real browser.

The site is built as ``make -C docs html`` builds it (``sphinx-build -W``: any warning
fails), served over HTTP from a local server (as a host would serve it; Sphinx's
search fetches pages, which a ``file://`` page may not), and loaded in headless
Chromium (``tests/chromium.py``): no console errors on any page, every image loaded,
the search page finds ``planar``, and the API page of ``vi.NFVI`` documents ``fit``.
"""

from __future__ import annotations

import functools
import re
import subprocess
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from chromium import CHROMIUM, MISSING, DevTools, console_errors

import flows

DOCS = Path(__file__).resolve().parent.parent / "docs"
PAGES = ["index", "getting-started", "formula", "numpyro", "fitting", "transport",
         "scaling", "benchmarks", "tutorials/index", "api",
         "tutorials/05_a_real_model_graded", "generated/vi.NFVI"]
# The only resources a page may take from elsewhere: MathJax, from its CDN. Offline
# (as on the test machines) that request fails; nothing else may.
EXTERNAL = ("https://cdn.jsdelivr.net/npm/mathjax@",)

IMAGES_JS = """
Array.from(document.images).map((img) => ({
  src: img.getAttribute('src'), complete: img.complete, width: img.naturalWidth}))
"""


def test_every_registered_step_is_on_the_formula_page():
    page = (DOCS / "formula.md").read_text()
    for name in flows.available():
        assert re.search(rf"^### `{name}`", page, re.MULTILINE), name


def test_every_tutorial_is_in_the_docs_toctree():
    listed = (DOCS / "tutorials" / "index.md").read_text()
    for notebook in sorted((DOCS.parent / "tutorials").glob("*.ipynb")):
        assert f"\n{notebook.stem}\n" in listed, notebook.name


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    pytest.importorskip("myst_nb", reason='the docs build needs the "docs" extra')
    out = tmp_path_factory.mktemp("site")
    build = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", "html", "-q",
         "-d", str(out / "doctrees"), str(DOCS), str(out / "html")],
        capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-5000:]
    return out / "html"


def test_site_builds_without_warnings(site):
    for page in [*PAGES, "search", "genindex"]:
        assert (site / f"{page}.html").is_file(), page
    assert (site / "searchindex.js").is_file()


@pytest.fixture(scope="module")
def server(site):
    handler = functools.partial(_QuietHandler, directory=str(site))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # the server logs nothing
        pass


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if CHROMIUM is None:
        pytest.skip(MISSING)
    devtools = DevTools(tmp_path_factory.mktemp("profile"))
    yield devtools
    devtools.close()


def _load(browser: DevTools, url: str) -> tuple[str, list[dict]]:
    """Open ``url``, wait until it and its images have loaded; (session, images)."""
    session = browser.new_page(url)
    assert browser.wait_for(session, "document.readyState === 'complete'"), url
    browser.wait_for(session, "Array.from(document.images).every((img) => img.complete)")
    return session, browser.evaluate(session, IMAGES_JS) or []


def _page_errors(browser: DevTools, session: str) -> list[dict]:
    return [e for e in console_errors(browser.events, session)
            if not e["url"].startswith(EXTERNAL)]


@pytest.mark.parametrize("page", PAGES)
def test_page_loads_without_errors_and_every_image_shows(page, server, browser):
    session, images = _load(browser, f"{server}/{page}.html")
    assert _page_errors(browser, session) == []
    broken = [img["src"] for img in images if not img["complete"] or img["width"] == 0]
    assert broken == [], f"images that did not load on {page}: {broken}"
    if page == "tutorials/05_a_real_model_graded":  # the notebook's plots, as PNG outputs
        assert sum(1 for img in images if img["src"].endswith(".png")) >= 2
    if page == "benchmarks":
        names = {img["src"].rsplit("/", 1)[-1] for img in images}
        assert {"zoo.png", "throughput.png", "kl_flows.png", "funnel.png"} <= names


def test_search_finds_planar(server, browser):
    session = browser.new_page(f"{server}/search.html?q=planar")
    found = browser.wait_for(
        session, "document.querySelectorAll('#search-results ul.search li').length", 30)
    assert found, "the search page found nothing for 'planar'"
    # Sphinx lists the matching pages first and fills in each one's excerpt after
    # fetching it: wait for the search to finish ("Searching" gives way to the results)
    text = browser.wait_for(
        session, "(t => t.startsWith('Searching') ? '' : t)"
                 "(document.querySelector('#search-results').innerText)", 30)
    assert "planar" in text.lower(), text
    assert _page_errors(browser, session) == []


def test_api_page_of_nfvi_shows_fit(server, browser):
    session, _ = _load(browser, f"{server}/generated/vi.NFVI.html")
    signature = browser.evaluate(
        session, "(document.getElementById('vi.NFVI.fit') || {}).innerText || ''")
    assert signature.startswith("fit("), signature
    body = browser.evaluate(session, "document.body.innerText")
    assert "Run n optimisation steps" in body
