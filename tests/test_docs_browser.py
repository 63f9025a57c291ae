"""The documentation site as a reader sees it: every page rendered in headless Chromium.

Chromium (Debian package `chromium`) is driven through its DevTools protocol over a websocket
(`websocket-client`), from files on disk, with no network: each page must load without console
errors, every `<img>` must decode, every internal link must resolve (file and anchor), the
sidebar must list every chapter, and the evidence comes first (issue 20): a chapter page shows its
title, abstract and claims figure before anything else of the notebook, with the run's parameters
and environment folded (closed) at the end; a run's own page is labelled "your run" above its
title; the index shows the claims figures before its first section. Screenshots of the index and one chapter are kept under the
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
from astro_nb.claims import claim_row
from astro_nb.runs import find_chapters

ROOT = Path(__file__).resolve().parents[1]
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

# what the page exposes to the test, read after the load event
PAGE_FACTS = """JSON.stringify({
  images: [...document.images].map(i => ({src: i.getAttribute('src').slice(0, 40), ok: i.complete && i.naturalWidth > 0})),
  links: [...document.querySelectorAll('a[href], link[href]')].map(a => a.href),
  sidebar: [...document.querySelectorAll('nav.sidebar a')].map(a => a.href),
  ids: [...document.querySelectorAll('[id]')].map(e => e.id),
  layout: LAYOUT,
})"""

# where the reader sees each part of the page: its top on the rendered page (null when absent or not displayed)
LAYOUT_JS = """(() => {
  const visible = e => e.checkVisibility ? e.checkVisibility() : e.getClientRects().length > 0;
  const main = document.querySelector('main'), top = s => {
    const e = main && main.querySelector(s); if (!e || !e.getClientRects().length) return null;
    return e.getBoundingClientRect().top + window.scrollY; };
  const kids = main ? [...main.children] : [], last = kids.filter(e => e.tagName !== 'FOOTER').pop();
  const details = main && main.querySelector('details.run'), params = details && details.querySelector('table');
  return {label: top('#your-run'), title: top('h1'), abstract: top('blockquote'), figure: top('.claims-figure'),
          figures: top('#claims-figures'), section: top('h2'), details: top('details.run'),
          last: last ? (last.matches('details.run') ? 'details.run' : last.tagName.toLowerCase()) : null,
          folded: details ? !details.open && !(params && visible(params)) : null};
})()"""
PAGE_FACTS = PAGE_FACTS.replace("LAYOUT", LAYOUT_JS)


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
    rec = docs.sample_run(tmp / "results" / "clusters", state=None, stderr=True)   # a record from before #20: stderr folded
    (rec / "metrics.json").write_text(json.dumps({"claims": [
        claim_row("sigma_8", 0.8, 0.78, 0.82, accept=[0.75, 0.87], paper=0.81, rule="r", unit="mocks", n=20)]}))
    out = tmp / "site"
    docs.build_site(out, root=ROOT, run_dirs=runs, results=tmp / "results",
                    notebooks=["00_core", "08_docs", "20_agn", "40_clusters"])
    return out


def _order_problems(page: str, f: dict) -> list:
    "What is out of the order a reader should meet (issue 20), from where the browser drew each part."
    lay, out = f["layout"], []
    def before(a, b):
        if lay[a] is None or lay[b] is None: out.append(f"{page}: no {a if lay[a] is None else b}")
        elif not lay[a] < lay[b]: out.append(f"{page}: the {a} is not above the {b}")
    if page.startswith(("chapters/", "runs/")):
        before("title", "abstract"); before("abstract", "section")
        if lay["details"] is not None or page.startswith("runs/"):      # a page made from a folder (record or run)
            before("abstract", "figure"); before("figure", "section")
            if lay["last"] != "details.run": out.append(f"{page}: ends with <{lay['last']}>, not the folded run details")
            if lay["folded"] is not True: out.append(f"{page}: the parameters and environment are not folded")
        if page.startswith("runs/"): before("label", "title")
    if page == "index.html" and lay["figures"] is not None: before("title", "figures"); before("figures", "section")
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
        problems += _order_problems(page, f)
    return problems


def test_project_site_in_chromium(browser, project_site):
    facts = _visit_all(browser, project_site)
    chapters = list(find_chapters(ROOT / "nbs"))
    assert chapters and len(facts) > len(chapters) + 5
    assert _problems(project_site, facts, chapters) == []
    shots = project_site / "_screenshots"
    browser.open(project_site / "index.html"); browser.screenshot(shots / "index.png")
    records = [c for c in chapters if 'class="provenance"' in (project_site / "chapters" / f"{c}.html").read_text()]
    if (ROOT / "results" / "reproduce").is_dir(): assert records                 # the published records are the chapters' pages
    if any((ROOT / "results" / "reproduce").glob("*/metrics.json")):
        assert facts["index.html"]["layout"]["figures"] is not None                 # claims figures (or why none) open the index
    chapter = (records or chapters)[0]
    browser.open(project_site / "chapters" / f"{chapter}.html"); browser.screenshot(shots / f"chapter-{chapter}.png")
    assert (shots / "index.png").stat().st_size > 5000 and (shots / f"chapter-{chapter}.png").stat().st_size > 5000


def test_fixture_site_in_chromium(browser, fixture_site):
    facts = _visit_all(browser, fixture_site)
    assert _problems(fixture_site, facts, ["agn", "clusters"]) == []
    images = {p: len(f["images"]) for p, f in facts.items() if p.startswith(("chapters/", "runs/"))}
    # agn: no record (the chapter as written) and a run (claims figure, 1 inline, a gallery of 3); clusters: record and run
    assert images == {"chapters/agn.html": 0, "runs/agn.html": 5, "chapters/clusters.html": 2, "runs/clusters.html": 2}
    assert facts["index.html"]["layout"]["figures"] is not None                     # the record's claims figure
    lay = facts["runs/clusters.html"]["layout"]
    assert lay["label"] < lay["title"] < lay["abstract"] < lay["figure"] < lay["section"] < lay["details"]
    browser.open(fixture_site / "runs" / "agn.html"); browser.screenshot(fixture_site / "_screenshots" / "run-agn.png")


def test_order_check_is_not_vacuous(browser, tmp_path):
    "A page with its parameters open at the top, and a claims figure below the notebook, is caught."
    site = tmp_path / "site"
    (site / "chapters").mkdir(parents=True)
    (site / "chapters" / "x.html").write_text(
        '<nav class="sidebar"><a href="x.html">x</a></nav><main><details class="run" open><summary>run</summary>'
        '<table><tr><td>n_train</td></tr></table></details><h1>X</h1><blockquote>abstract</blockquote><h2>Setup</h2>'
        '<figure class="claims-figure">claims</figure><p>end</p><footer>f</footer></main>')
    (site / "_site.json").write_text(json.dumps({"pages": ["chapters/x.html"]}))
    problems = _problems(site, _visit_all(browser, site), ["x"])
    assert "chapters/x.html: the figure is not above the section" in problems
    assert "chapters/x.html: ends with <p>, not the folded run details" in problems
    assert "chapters/x.html: the parameters and environment are not folded" in problems


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
