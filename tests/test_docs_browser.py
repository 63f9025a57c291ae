"""The documentation site as a reader sees it: every page rendered in headless Chromium.

Chromium (Debian package `chromium`) is driven through its DevTools protocol over a websocket
(`websocket-client`), from files on disk, with no network: each page must load without console
errors, every `<img>` must decode, every internal link must resolve (file and anchor), and the
sidebar must list every chapter. Screenshots of the index and one chapter are kept under the
site's `_screenshots/` folder (`_docs/_screenshots/` for the project's own site).

Without chromium the tests skip, except where ASTRO_NB_REQUIRE_BROWSER or CI is set (`.ci/run`
sets it after installing chromium): there a missing browser fails.
"""
import base64
import json
import os
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from astro_nb import docs
from astro_nb.runs import find_chapters

ROOT = Path(__file__).resolve().parents[1]
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

# what the page exposes to the test, read after the load event
PAGE_FACTS = """JSON.stringify({
  images: [...document.images].map(i => ({src: i.getAttribute('src').slice(0, 40), ok: i.complete && i.naturalWidth > 0})),
  links: [...document.querySelectorAll('a[href], link[href]')].map(a => a.href),
  sidebar: [...document.querySelectorAll('nav.sidebar a')].map(a => a.href),
  ids: [...document.querySelectorAll('[id]')].map(e => e.id),
})"""


def _need_browser(reason):
    if os.environ.get("ASTRO_NB_REQUIRE_BROWSER") or os.environ.get("CI"):
        pytest.fail(f"{reason} (required here: ASTRO_NB_REQUIRE_BROWSER/CI is set; .ci/run installs chromium with apt-get)")
    pytest.skip(f"{reason}: install Debian's chromium (`apt-get install -y chromium`) to run the browser checks")


def _chromium_binary():
    found = os.environ.get("ASTRO_NB_CHROMIUM") or next(filter(None, map(shutil.which, BROWSERS)), None)
    if not found: _need_browser("no chromium on PATH")
    return found


class Chromium:
    "A headless Chromium and one page, driven through the DevTools protocol."

    def __init__(self, binary, profile: Path):
        self.profile = profile
        self.proc = subprocess.Popen(
            [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
             "--no-default-browser-check", "--disable-extensions", "--remote-debugging-port=0",
             f"--user-data-dir={profile}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=open(profile.parent / "chromium.log", "wb"))
        port = self._port()
        pages = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10))
        url = next(p["webSocketDebuggerUrl"] for p in pages if p["type"] == "page")
        import websocket
        self.ws = websocket.create_connection(url, timeout=60, suppress_origin=True)
        self.next_id, self.events = 0, []
        for domain in ("Page", "Runtime", "Log"): self.call(f"{domain}.enable")
        self.call("Emulation.setDeviceMetricsOverride", width=1280, height=900, deviceScaleFactor=1, mobile=False)

    def _port(self, timeout=30):
        active = self.profile / "DevToolsActivePort"
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"chromium exited with {self.proc.returncode}: see {self.profile.parent / 'chromium.log'}")
            if active.exists() and active.read_text().strip(): return int(active.read_text().split()[0])
            time.sleep(0.1)
        raise RuntimeError("chromium did not open its DevTools port")

    def call(self, method, **params):
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self.next_id:
                if "error" in msg: raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            if "method" in msg: self.events.append(msg)

    def _wait_for(self, event, timeout=60):
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if any(e["method"] == event for e in self.events): return
            msg = json.loads(self.ws.recv())
            if "method" in msg: self.events.append(msg)
        raise TimeoutError(event)

    def open(self, path: Path) -> dict:
        "Load `path`; return its facts (images, links, sidebar, ids) and the console errors it raised."
        self.events = []
        self.call("Page.navigate", url=path.resolve().as_uri())
        self._wait_for("Page.loadEventFired")
        facts = json.loads(self.call("Runtime.evaluate", expression=PAGE_FACTS, returnByValue=True)["result"]["value"])
        facts["errors"] = [_describe(e) for e in self.events if _is_error(e)]
        return facts

    def screenshot(self, target: Path):
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"]))

    def close(self):
        try: self.call("Browser.close")
        except Exception: pass
        try: self.ws.close()
        except Exception: pass
        try: self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired: self.proc.kill()


def _is_error(e):
    m, p = e["method"], e.get("params", {})
    return (m == "Runtime.exceptionThrown" or (m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"))
            or (m == "Log.entryAdded" and p["entry"].get("level") == "error"))


def _describe(e):
    p = e.get("params", {})
    if e["method"] == "Log.entryAdded": return f"{p['entry'].get('text')} ({p['entry'].get('url', '')})"
    if e["method"] == "Runtime.exceptionThrown": return p["exceptionDetails"].get("text", "exception")
    return " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", []))


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    binary = _chromium_binary()
    try: import websocket  # noqa: F401
    except ImportError: _need_browser("websocket-client is not installed (pip install -e '.[dev]')")
    b = Chromium(binary, tmp_path_factory.mktemp("chromium") / "profile")
    yield b
    b.close()


@pytest.fixture(scope="module")
def project_site():
    "The project's own site, as `astro-nb docs` writes it: _docs/ from nbs/, _runs/ and results/reproduce/."
    out = ROOT / "_docs"
    docs.build_site(out, root=ROOT)
    return out


@pytest.fixture(scope="module")
def fixture_site(tmp_path_factory):
    "A small site with a completed run (figures inline and in a gallery) and a published claim."
    tmp = tmp_path_factory.mktemp("site")
    runs = [docs.sample_run(tmp / "_runs" / "clusters-1"), docs.sample_run(tmp / "_runs" / "agn-1", "agn", n_figures=3)]
    rec = tmp / "results" / "clusters"
    rec.mkdir(parents=True)
    (rec / "metrics.json").write_text(json.dumps({"claims": [
        {"claim": "sigma_8", "measured": 0.8, "uncertainty": 0.02, "paper": 0.81, "verdict": "reproduced"}]}))
    out = tmp / "site"
    docs.build_site(out, root=ROOT, run_dirs=runs, results=tmp / "results",
                    notebooks=["00_core", "08_docs", "20_agn", "40_clusters"])
    return out


def _visit_all(browser, site: Path) -> dict:
    pages = json.loads((site / "_site.json").read_text())["pages"]
    return {p: browser.open(site / p) for p in pages}


def _problems(site: Path, facts: dict, chapters: list) -> list:
    # an anchor matches an id as written or percent-decoded, as browsers match fragments
    problems, ids = [], {(site / p).resolve(): set(f["ids"]) for p, f in facts.items()}
    for page, f in facts.items():
        problems += [f"{page}: console error: {e}" for e in f["errors"]]
        problems += [f"{page}: image does not decode: {i['src']}" for i in f["images"] if not i["ok"]]
        for href in f["links"]:
            u = urlsplit(href)
            if u.scheme != "file": continue
            target = Path(unquote(u.path)).resolve()
            if not target.exists(): problems.append(f"{page}: broken link {href}")
            elif u.fragment and target.suffix == ".html" and not {u.fragment, unquote(u.fragment)} & ids.get(target, set()):
                problems.append(f"{page}: no anchor #{u.fragment} on {target.name}")
        listed = {Path(unquote(urlsplit(h).path)).resolve() for h in f["sidebar"]}
        problems += [f"{page}: sidebar lacks chapter {c}" for c in chapters
                     if (site / "chapters" / f"{c}.html").resolve() not in listed]
    return problems


def test_project_site_in_chromium(browser, project_site):
    facts = _visit_all(browser, project_site)
    chapters = list(find_chapters(ROOT / "nbs"))
    assert chapters and len(facts) > len(chapters) + 5
    assert _problems(project_site, facts, chapters) == []
    shots = project_site / "_screenshots"
    browser.open(project_site / "index.html"); browser.screenshot(shots / "index.png")
    with_run = [c for c in chapters if "Executed run" in (project_site / "chapters" / f"{c}.html").read_text()]
    chapter = (with_run or chapters)[0]
    browser.open(project_site / "chapters" / f"{chapter}.html"); browser.screenshot(shots / f"chapter-{chapter}.png")
    assert (shots / "index.png").stat().st_size > 5000 and (shots / f"chapter-{chapter}.png").stat().st_size > 5000


def test_fixture_site_in_chromium(browser, fixture_site):
    facts = _visit_all(browser, fixture_site)
    assert _problems(fixture_site, facts, ["agn", "clusters"]) == []
    images = {p: len(f["images"]) for p, f in facts.items() if p.startswith("chapters/")}
    assert images == {"chapters/agn.html": 4, "chapters/clusters.html": 1}   # agn: 1 inline + a gallery of 3
    browser.open(fixture_site / "chapters" / "agn.html"); browser.screenshot(fixture_site / "_screenshots" / "chapter-agn.png")


def test_browser_sees_broken_things(browser, tmp_path):
    "The checks are not vacuous: a console error, an image that does not decode and a broken link are all caught."
    site = tmp_path / "site"
    (site / "chapters").mkdir(parents=True)
    (site / "index.html").write_text('<nav class="sidebar"><a href="chapters/x.html">x</a></nav><img src="data:image/png;base64,AAAA">'
                                     '<a href="missing.html">m</a><a href="#nope">n</a><script>console.error("boom")</script>')
    (site / "chapters" / "x.html").write_text('<nav class="sidebar"></nav>')
    (site / "_site.json").write_text(json.dumps({"pages": ["index.html", "chapters/x.html"]}))
    problems = _problems(site, _visit_all(browser, site), ["x"])
    assert any("console error: boom" in p for p in problems)
    assert any("image does not decode" in p for p in problems)
    assert any("broken link" in p and "missing.html" in p for p in problems)
    assert any("no anchor #nope" in p for p in problems)
    assert "chapters/x.html: sidebar lacks chapter x" in problems
