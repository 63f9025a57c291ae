"""The documentation site (astro_nb.docs), checked in pure python: pages, sidebar, links, runs, claims, API.

The site is built from the real nbs/ (a few notebooks, unexecuted, to stay quick) and a tiny run
folder written by `docs.sample_run`; tests/test_docs_browser.py renders it in Chromium.
"""
import base64
import html
import json
import logging
import os
import re
from pathlib import Path

import pytest

from astro_nb import docs
from astro_nb.runs import ChapterError, run_scale

ROOT = Path(__file__).resolve().parents[1]
NBS = ["00_core", "01_runs", "08_docs", "20_agn", "40_clusters"]


def _text(path: Path) -> str:
    "What a reader sees of a page: its text without tags."
    return html.unescape(re.sub(r"<[^>]+>", "", path.read_text()))


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("docs")
    run = docs.sample_run(tmp / "_runs" / "clusters-20260101-000000")
    out = tmp / "site"
    files = docs.build_site(out, root=ROOT, run_dirs=[run], results=tmp / "no-results", notebooks=NBS)
    return out, files, run


def test_every_page_is_written(site):
    out, files, _ = site
    rel = {f.relative_to(out).as_posix() for f in files}
    assert {"index.html", "chapters/clusters.html", "runs/clusters.html", "chapters/agn.html", "notebooks/00_core.html",
            "notebooks/01_runs.html", "notebooks/08_docs.html", "style.css", "_site.json"} <= rel
    assert "runs/agn.html" not in rel                                  # no run of agn: no run page
    modules = [name for name, _ in docs.package_modules(ROOT / "astro_nb")]
    assert {"astro_nb.core", "astro_nb.runs", "astro_nb.docs", "astro_nb.cli", "astro_nb.inference.npe"} <= set(modules)
    assert {f"api/{m}.html" for m in modules} <= rel
    assert json.loads((out / "_site.json").read_text())["pages"][0] == "index.html"


def test_clean_site_has_no_problems_and_no_stderr(site):
    out, _, _ = site
    assert docs.check_site(out) == []
    assert json.loads((out / "_site.json").read_text())["stderr"] == {}


def test_pages_load_nothing_from_the_network(site):
    out, files, _ = site
    for f in files:
        if f.suffix == ".html":
            text = f.read_text()
            assert "<script" not in text, f
            assert not re.search(r'<(?:link|img)[^>]+(?:href|src)="(?:https?:)?//', text), f


def test_sidebar_on_every_page_lists_every_chapter(site):
    out, files, _ = site
    for f in (f for f in files if f.suffix == ".html"):
        text = f.read_text()
        base = "../" * (len(f.relative_to(out).parts) - 1)
        nav = text[text.index('<nav class="sidebar"'):text.index("</nav>")]
        for page in ("chapters/agn.html", "chapters/clusters.html", "notebooks/00_core.html", "api/astro_nb.core.html"):
            assert f'href="{base}{page}"' in nav, (f, page)


def _order(page: str, *marks) -> list:
    "Where each mark first appears on the page (-1 when absent)."
    return [page.find(m) for m in marks]


def test_run_page_is_labelled_and_opens_on_the_evidence(site):
    out, _, run = site
    page = (out / "runs" / "clusters.html").read_text()
    main = page[page.index("<main>"):page.index("<footer>")]
    text = " ".join(_text(out / "runs" / "clusters.html").split())
    scale = docs._scale_words(run_scale(run))
    assert f"Your run, {scale} ({run.resolve()}), not the published record." in text
    assert f"Your run ({scale}) {run.resolve()} (state: completed, 2 figures saved)" in text
    order = _order(main, 'id="your-run"', "<h1", "<blockquote", 'id="claims-figure"', "<h2", '<details class="run"')
    assert -1 not in order and order == sorted(order)          # label, title, abstract, claims figure, notebook, details
    assert main.rstrip().endswith("</details>")                # parameters and environment folded at the very end
    assert "<caption>Parameters</caption>" in page and "<caption>Environment</caption>" in page
    assert '<a href="../chapters/clusters.html">' in main      # back to the page of record
    uris = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(uris) == 2 and all(base64.b64decode(u).startswith(b"\x89PNG") for u in uris)   # claims figure, inline figure
    title = docs.notebook_title(docs.read_notebook(ROOT / "nbs" / "40_clusters.ipynb"))
    assert f"<title>{html.escape(title, quote=False)} (your run, {scale}) · astro_nb</title>" in page


def test_chapter_without_run_is_the_chapter_as_written(site):
    out, _, _ = site
    text = _text(out / "chapters" / "agn.html")
    assert "No reproduce record of this chapter is published yet" in text and "astro-nb run agn" in text
    assert "Stars, galaxies and AGN" in text
    # with a run but no record: the chapter as written, linking the run's own page
    page = (out / "chapters" / "clusters.html").read_text()
    assert "No reproduce record" in page and '<a href="../runs/clusters.html">its own page</a>' in page
    assert "data:image/png" not in page


def test_library_notebook_pages_follow_nbdev_directives(site):
    out, _, _ = site
    page = (out / "notebooks" / "00_core.html").read_text()
    text = _text(out / "notebooks" / "00_core.html")
    assert "from fastcore.test import" not in text          # a `#| hide` cell
    assert "#| export" not in text and "default_exp" not in text
    assert "def get_device" in text
    assert '<a href="../api/astro_nb.core.html">' in page


def test_api_page_lists_all_of_the_module(site):
    out, _, _ = site
    from astro_nb import core
    page = (out / "api" / "astro_nb.core.html").read_text()
    for name in core.__all__:
        assert f'id="{name}"' in page, name
    assert '<a href="../notebooks/00_core.html">nbs/00_core.ipynb</a>' in page
    assert 'href="../notebooks/00_core.html#cell-id=' in page     # each name links its defining cell (anchors checked)
    assert "get_device(device=&#x27;auto&#x27;)" in page


def test_index_has_commands_and_claims_sentence(site):
    out, _, _ = site
    text = _text(out / "index.html")
    assert 'pip install -e ".[dev]"' in text and "astro-nb run all" in text
    assert "No reproduce run is published yet" in text
    assert 'id="claims-figures"' not in (out / "index.html").read_text()    # no record: no figures, no note


def test_index_claims_table(tmp_path):
    rec = tmp_path / "results" / "sed"
    rec.mkdir(parents=True)
    from astro_nb.claims import claim_row
    (rec / "metrics.json").write_text(json.dumps({"claims": [
        claim_row("log M* recovered", 0.0912345, 0.08, 0.1, accept=[None, 0.12], paper=0.1, rule="r", unit="spectra", n=50),
        {"claim": "SFR bias", "measured": None, "uncertainty": None, "paper": 0.2, "verdict": "not measured"}]}))
    (rec / "figures").mkdir(); (rec / "figures" / "claims.png").write_bytes(b"\x89PNG fake")
    (tmp_path / "results" / "other").mkdir()
    (tmp_path / "results" / "other" / "metrics.json").write_text(json.dumps({"accuracy": 0.9}))   # no claims: ignored
    docs.build_site(tmp_path / "site", root=ROOT, run_dirs=[], results=tmp_path / "results", notebooks=["30_sed"])
    page = (tmp_path / "site" / "index.html").read_text()
    rows = re.findall(r"<tr>(.*?)</tr>", page[page.index('class="claims"'):])
    assert len(rows) == 3                                       # header and two claims
    assert '<a href="chapters/sed.html">sed</a>' in rows[1] and "<td>0.09123</td>" in rows[1]
    assert "<td>not measured</td>" in rows[2] and "<td>[0.08, 0.1] over 50 spectra</td>" in rows[1]
    assert "<li><a href=\"chapters/sed.html\">sed</a>: 1 reproduced, 1 not measured</li>" in page
    assert page.count('alt="sed claims"') == 1                   # the claims figures, side by side, once
    main = page[page.index("<main>"):]
    order = _order(main, "<h1", 'id="claims-figures"', 'alt="sed claims"', "<h2", 'class="claims"')
    assert -1 not in order and order == sorted(order)            # the index opens with the figures, before its sections
    assert docs.check_site(tmp_path / "site") == []


def test_index_says_when_records_have_no_claims_figure(tmp_path):
    rec = tmp_path / "results" / "agn"
    rec.mkdir(parents=True)
    (rec / "metrics.json").write_text(json.dumps({"claims": []}))
    docs.build_site(tmp_path / "site", root=ROOT, run_dirs=[], results=tmp_path / "results", notebooks=["20_agn"])
    page = (tmp_path / "site" / "index.html").read_text()
    main = page[page.index("<main>"):]
    assert "No claims figure is published yet" in main and main.index('id="claims-figures"') < main.index("<h2")


def test_record_is_the_page_of_record_and_the_run_has_its_own(tmp_path):
    old = docs.sample_run(tmp_path / "_runs" / "sed-old", "sed")
    os.utime(old / "sed.ipynb", (0, 0))
    new = docs.sample_run(tmp_path / "_runs" / "sed-new", "sed")
    legacy = docs.sample_run(tmp_path / "_runs" / "sed-legacy", "sed", state=None)      # before status.json existed
    failed = docs.sample_run(tmp_path / "_runs" / "sed-failed", "sed", state="failed")
    assert docs.pick_run("sed", [old, new, legacy, failed]) == (new, "1 unfinished run skipped")
    assert docs.pick_run("sed", [legacy]) == (legacy, "")
    assert docs.pick_run("sed", [failed]) == (None, "1 unfinished run skipped")
    record = docs.sample_run(tmp_path / "results" / "sed", "sed", state=None)
    assert docs.record_of("sed", tmp_path / "results") == record and docs.record_of("agn", tmp_path / "results") is None
    # a newer completed run does not replace the record: it gets its own page, and the two link each other
    site = tmp_path / "site"
    docs.build_site(site, root=ROOT, run_dirs=[old, new, failed], results=tmp_path / "results", notebooks=["30_sed"])
    text = " ".join(_text(site / "chapters" / "sed.html").split())
    assert f"Published reproduce record {record.resolve()} (state: no status.json" in text
    assert f"The published reproduce record {record.resolve()}: this chapter's page of record." in text
    assert str(new.resolve()) not in text
    page = (site / "chapters" / "sed.html").read_text()
    main = page[page.index("<main>"):page.index("<footer>")]
    order = _order(main, "<h1", "<blockquote", 'id="claims-figure"', 'class="provenance"', "<h2", '<details class="run"')
    assert -1 not in order and order == sorted(order) and main.rstrip().endswith("</details>")
    assert '<a href="../runs/sed.html">its own page</a>' in main
    run_text = " ".join(_text(site / "runs" / "sed.html").split())
    assert str(new.resolve()) in run_text and "not the published record" in run_text
    assert '<a href="../chapters/sed.html">' in (site / "runs" / "sed.html").read_text()
    assert docs.check_site(site) == []


def test_quick_run_is_labelled_quick(tmp_path):
    chapter = ROOT / "nbs" / "20_agn.ipynb"
    from astro_nb.runs import chapter_params
    defaults = {k: p.default for k, p in chapter_params(chapter).items() if p.literal}
    run = docs.sample_run(tmp_path / "_runs" / "agn-1", "agn")
    (run / "params.json").write_text(json.dumps({"study": "agn", "chapter": str(chapter), "parameters": defaults}))
    assert run_scale(run) == "quick"
    docs.build_site(tmp_path / "site", root=ROOT, run_dirs=[run], results=tmp_path / "none", notebooks=["20_agn"])
    page = (tmp_path / "site" / "runs" / "agn.html").read_text()
    assert "<strong>Your run, quick scale</strong>" in page and "smoke tests" in page
    assert 'aria-current="page">agn: your run, quick scale</a>' in page


def test_saved_figures_shown_when_not_inline(tmp_path):
    run = docs.sample_run(tmp_path / "_runs" / "agn-1", "agn", n_figures=7)
    docs.build_site(tmp_path / "site", root=ROOT, run_dirs=[run], results=tmp_path / "r", notebooks=["20_agn"])
    page = (tmp_path / "site" / "runs" / "agn.html").read_text()
    assert page.count('<img') == 9 and "Figures saved by this run" in page     # the claims figure, 1 inline, the 7 saved


def test_corrupt_notebook_is_skipped_with_one_line(tmp_path, caplog):
    bad = tmp_path / "15_broken.ipynb"
    bad.write_text('{"cells": [{"cell_type": "code", "sou')
    with caplog.at_level(logging.WARNING, logger="astro_nb.docs"):
        files = docs.build_site(tmp_path / "site", root=ROOT, run_dirs=[], results=tmp_path / "r", notebooks=["00_core", bad])
    msgs = [r.getMessage() for r in caplog.records if "15_broken" in r.getMessage()]
    assert len(msgs) == 1 and "\n" not in msgs[0] and msgs[0].startswith("docs: skipped")
    assert (tmp_path / "site" / "notebooks" / "00_core.html").exists() and len(files) > 3
    assert docs.check_site(tmp_path / "site") == []


def test_stderr_outputs_are_reported(tmp_path, caplog):
    run = docs.sample_run(tmp_path / "_runs" / "clusters-1", stderr=True)
    with caplog.at_level(logging.WARNING, logger="astro_nb.docs"):
        docs.build_site(tmp_path / "site", root=ROOT, run_dirs=[run], results=tmp_path / "r", notebooks=["40_clusters"])
    assert any("runs/clusters.html shows 1 stderr" in r.getMessage() for r in caplog.records)
    report = json.loads((tmp_path / "site" / "_site.json").read_text())["stderr"]
    assert report == {"runs/clusters.html": ["cell 3: UserWarning: something to fix"]}
    assert docs.check_site(tmp_path / "site") == ["runs/clusters.html: shows 1 stderr/error output(s)"]
    assert docs.check_site(tmp_path / "site", stderr=False) == []


def _project(tmp_path, *notebooks) -> Path:
    root = tmp_path / "proj"
    (root / "nbs").mkdir(parents=True)
    (root / "settings.ini").write_text("[DEFAULT]\n")
    (root / "index.ipynb").write_text((ROOT / "index.ipynb").read_text())
    for n in notebooks: (root / "nbs" / f"{n}.ipynb").write_text((ROOT / "nbs" / f"{n}.ipynb").read_text())
    return root


def test_docs_build_fails_on_a_stderr_output_of_your_run(tmp_path):
    "#20: `astro-nb docs` exits non-zero naming the page and the cell; the site is still written to be looked at."
    root = _project(tmp_path, "40_clusters")
    run = docs.sample_run(tmp_path / "_runs" / "clusters-1", stderr=True)
    with pytest.raises(docs.SiteProblems) as e:
        docs.build_docs([run], out=tmp_path / "site", root=root)
    assert e.value.problems == ["runs/clusters.html: shows 1 stderr/error output(s)"]
    assert "cell 3: UserWarning: something to fix" in str(e.value) and isinstance(e.value, ChapterError)
    assert (tmp_path / "site" / "runs" / "clusters.html").exists()


def test_cli_docs_exit_code(tmp_path, monkeypatch, capsys):
    root = _project(tmp_path, "40_clusters")
    monkeypatch.chdir(root)
    from astro_nb.cli import main
    clean = docs.sample_run(tmp_path / "_runs" / "clusters-1")
    assert main(["docs", str(clean), "--out", str(tmp_path / "site")]) == 0
    noisy = docs.sample_run(tmp_path / "_runs" / "clusters-2", stderr=True)
    assert main(["docs", str(noisy), "--out", str(tmp_path / "site")]) == 1
    err = capsys.readouterr().err
    assert "runs/clusters.html: shows 1 stderr/error output(s)" in err and "cell 3: UserWarning" in err


def test_stderr_of_a_published_record_is_folded_not_fatal(tmp_path):
    "Records published before #20 hold stderr streams: folded into a visible note, so they break nobody's build."
    root = _project(tmp_path, "40_clusters")
    record = docs.sample_run(root / "results" / "reproduce" / "clusters", state=None, stderr=True)
    docs.build_docs(None, out=tmp_path / "site", root=root)                       # no SiteProblems
    page = (tmp_path / "site" / "chapters" / "clusters.html").read_text()
    assert "output_stderr" not in page and "UserWarning: something to fix" in page
    note = page[page.index('id="folded-stderr"'):]
    assert "1 stderr output of this record folded here" in _text_of(note) and "Republishing the record" in note
    main = page[page.index("<main>"):]
    assert main.index('id="claims-figure"') < main.index('id="folded-stderr"') < main.index("<h2")
    assert docs.stderr_outputs(docs.read_notebook(record / "clusters.ipynb"))     # the record itself is untouched


def _text_of(fragment: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", fragment)).split())


def test_rebuild_removes_pages_no_longer_in_the_site(tmp_path):
    out = tmp_path / "site"
    docs.build_site(out, root=ROOT, run_dirs=[], results=tmp_path / "r", notebooks=["00_core", "01_runs"])
    (out / "mine.txt").write_text("not the site's")
    docs.build_site(out, root=ROOT, run_dirs=[], results=tmp_path / "r", notebooks=["00_core"])
    assert not (out / "notebooks" / "01_runs.html").exists() and (out / "mine.txt").exists()
    assert docs.check_site(out) == []


def test_check_site_finds_what_a_reader_would_hit(tmp_path):
    out = tmp_path / "site"
    (out / "a").mkdir(parents=True)
    (out / "index.html").write_text('<nav class="sidebar"><a href="a/p.html#there">p</a></nav><a href="../outside.html">o</a>'
                                    '<link rel="stylesheet" href="https://cdn.example/x.css"><a href="https://example.org">ok</a>')
    (out / "a" / "p.html").write_text('<p id="here">no sidebar</p><img src="missing.png">')
    assert docs.check_site(out) == ["a/p.html: no navigation sidebar", "a/p.html: broken link: missing.png",
                                    "index.html: no anchor #there on p.html: a/p.html#there",
                                    "index.html: link leaves the site: ../outside.html",
                                    "index.html: loads https://cdn.example/x.css from the network"]
    assert docs.check_site(tmp_path / "empty") == [f"{tmp_path / 'empty'}: no pages (build the site first)"]


def test_crafted_manifest_deletes_nothing_outside_the_site(tmp_path):
    "#21: stale pages listed in _site.json are removed only inside the site folder."
    out = tmp_path / "site"; out.mkdir()
    victim = tmp_path / "victim_file.txt"; victim.write_text("keep me")
    (out / "_site.json").write_text(json.dumps({"pages": ["chapters/../../victim_file.txt", str(victim), 3]}))
    docs.build_site(out, root=ROOT, run_dirs=[], results=tmp_path / "none", notebooks=["00_core"])
    assert victim.read_text() == "keep me"


def _site_files(out: Path) -> dict:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def test_a_failed_build_leaves_the_old_site_whole(tmp_path, monkeypatch):
    "#21: the site is built in a temporary folder and moved in only once whole."
    out = tmp_path / "site"
    docs.build_site(out, root=ROOT, run_dirs=[], results=tmp_path / "r", notebooks=["00_core", "01_runs"])
    before = _site_files(out)
    real, laid = docs.layout, []
    def failing(page, pages, body):
        laid.append(page.path)
        if len(laid) == 3: raise OSError(28, "No space left on device")
        return real(page, pages, body) + "<!-- rebuilt -->"
    monkeypatch.setattr(docs, "layout", failing)
    with pytest.raises(OSError, match="No space left"):
        docs.build_site(out, root=ROOT, run_dirs=[], results=tmp_path / "r", notebooks=["00_core"])
    assert _site_files(out) == before                                  # not one page replaced, none removed
    assert [p.name for p in tmp_path.iterdir()] == ["site"]             # no temporary folder left beside it
    monkeypatch.setattr(docs, "layout", real)
    docs.build_site(out, root=ROOT, run_dirs=[], results=tmp_path / "r", notebooks=["00_core"])
    assert not (out / "notebooks" / "01_runs.html").exists() and docs.check_site(out) == []


def test_the_site_writes_nothing_through_a_symlink_out_of_its_folder(tmp_path):
    "#21: every path the site writes resolves inside --out (a symlinked folder in the way is refused)."
    out, elsewhere = tmp_path / "site", tmp_path / "elsewhere"
    out.mkdir(); elsewhere.mkdir()
    (out / "notebooks").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(ChapterError, match="would write outside it.*notebooks/00_core.html"):
        docs.build_site(out, root=ROOT, run_dirs=[], results=tmp_path / "r", notebooks=["00_core"])
    assert list(elsewhere.iterdir()) == [] and list(out.iterdir()) == [out / "notebooks"]
