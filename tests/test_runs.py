import json
import shutil
import subprocess
import sys

import nbformat
import pytest

from astro_nb import runs
from astro_nb.core import load_json, save_json
from astro_nb import docs
from astro_nb.cli import main
from astro_nb.runs import ChapterError, chapter_params, find_chapters, load_profile, plan_runs
from conftest import FIXTURES, ROOT


def test_list_shows_only_chapters(fixture_nbs, capsys):
    assert list(find_chapters(fixture_nbs)) == ["tiny"]          # 00_helper has no parameters cell
    assert main(["list", "--nbs", str(fixture_nbs)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("tiny ")
    assert "n_points: int = 50" in out[0] and "noise: float = 0.1" in out[0] and "label: str = 'tiny'" in out[0]


def test_unknown_parameter_is_refused_with_valid_names(fixture_nbs, capsys, tmp_path):
    rc = main(["run", "tiny", "--nbs", str(fixture_nbs), "-p", "n_point", "3", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert rc == 1 and "'n_point'" in err and "n_points: int = 50" in err
    assert not (tmp_path / "r").exists()                          # refused before anything ran


@pytest.mark.parametrize("name,value,msg", [("n_points", "3.5", "must be int"), ("noise", "abc", "must be float"),
                                             ("fail", "maybe", "must be bool")])
def test_wrong_type_is_refused(fixture_nbs, capsys, name, value, msg):
    assert main(["run", "tiny", "--nbs", str(fixture_nbs), "-p", name, value]) == 1
    err = capsys.readouterr().err
    assert msg in err and repr(name) in err


def test_unknown_study_and_missing_profile(fixture_nbs, capsys):
    assert main(["run", "galaxies", "--nbs", str(fixture_nbs)]) == 1
    assert "unknown study 'galaxies'" in capsys.readouterr().err
    assert main(["run", "tiny", "--nbs", str(fixture_nbs), "-f", "no_such_params.yaml"]) == 1
    assert "params file no_such_params.yaml not found" in capsys.readouterr().err
    assert main(["run", "tiny", "--nbs", str(fixture_nbs), "--profile", "huge"]) == 1
    err = capsys.readouterr().err
    assert "unknown profile 'huge'" in err and "paper" in err and "quick" in err


def test_params_file_and_profile_priorities(fixture_nbs, tmp_path):
    pfile = tmp_path / "p.yaml"
    pfile.write_text("noise: 0.3\nn_points: 60\n")
    (study, nb, params), = plan_runs("tiny", str(FIXTURES / "profile.yaml"), str(pfile), {"n_points": "70"}, "cpu",
                                     fixture_nbs)
    assert params == {"n_points": 70, "noise": 0.3, "device": "cpu"}
    (_, _, params), = plan_runs("tiny", str(FIXTURES / "profile.yaml"), None, None, None, fixture_nbs)
    assert params == {"n_points": 80}
    pfile.write_text("noise: [1, 2]\n")
    with pytest.raises(ChapterError, match="must be float"):
        plan_runs("tiny", "quick", str(pfile), None, None, fixture_nbs)
    pfile.write_text("- not a mapping\n")
    with pytest.raises(ChapterError, match="mapping"):
        plan_runs("tiny", "quick", str(pfile), None, None, fixture_nbs)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    "One real run of the fixture chapter (a kernel start is the slow part), shared by the tests that only read it."
    import contextlib
    import io
    out, buf = tmp_path_factory.mktemp("tiny") / "run", io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(["run", "tiny", "--nbs", str(FIXTURES / "nbs"), "-p", "n_points", "40", "-p", "label", "hello",
                   "--device", "cpu", "--out", str(out), "--no-progress"])
    assert rc == 0
    return out, buf.getvalue()


def test_run_end_to_end(tiny_run):
    out, table = tiny_run
    metrics = load_json(out / "metrics.json")
    assert metrics["n_points"] == 40 and abs(metrics["slope"] - 2.0) < 0.2
    params = load_json(out / "params.json")
    assert params["study"] == "tiny" and params["parameters"]["label"] == "hello"
    assert params["parameters"]["n_points"] == 40 and params["parameters"]["seed"] == 0   # defaults recorded too
    assert params["parameters"]["out_dir"] == str(out.resolve()) and params["parameters"]["device"] == "cpu"
    status = runs.run_status(out)
    assert status["state"] == "completed" and status["error"] is None and status["finished"] >= status["started"]
    from astro_nb.publish import chapter_hash       # the code it ran, recorded at its start for publish's record
    assert status["source"]["chapter_sha256"] == chapter_hash(FIXTURES / "nbs" / "10_tiny.ipynb")
    assert (out / "figures" / "line.png").stat().st_size > 1000
    nb = nbformat.read(out / "tiny.ipynb", as_version=4)
    assert any("injected-parameters" in c.metadata.get("tags", []) for c in nb.cells)
    assert "hello" in json.dumps(nb.cells[-1].outputs)
    report_md = (out / "report.md").read_text()
    assert "| tiny | run | slope |" in report_md and "| 2 | the line y = 2t + 1 |" in report_md
    assert "| tiny | run | slope |" not in table                 # the terminal gets a short ending, the tables stay in the file
    tail = table[table.index("== tiny: done"):].splitlines()[1:]
    assert tail[0].startswith("tiny: completed, ") and tail[-1] == f"full tables: {out / 'report.md'}" and len(tail) <= 5
    assert (out / "report.html").exists()
    assert not list(out.glob(".*.tmp"))                          # no temporary notebook left behind


def test_failing_cell_gives_short_error(fixture_nbs, tmp_path):
    exe = shutil.which("astro-nb") or pytest.fail("the astro-nb console script is not installed")
    proc = subprocess.run([exe, "run", "tiny", "--nbs", str(fixture_nbs),
                           "-p", "fail", "true", "--out", str(tmp_path / "f"), "--no-progress"],
                          capture_output=True, text=True)
    assert proc.returncode == 1
    assert "cell 4 failed: ValueError: asked to fail" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert "without encryption" not in proc.stderr + proc.stdout   # the kernel's start-up log stays quiet
    assert runs.run_status(tmp_path / "f")["state"] == "failed"
    assert "cell 4: ValueError: asked to fail" in runs.run_status(tmp_path / "f")["error"]
    assert (tmp_path / "f" / "tiny.ipynb").exists()              # the executed notebook keeps the traceback
    assert load_json(tmp_path / "f" / "metrics.json")["n_points"] == 50   # what ran before the error is kept


def _copy_run(src, dst, **params):
    "A copy of a run folder with some parameters and metrics changed (as if run with them)."
    shutil.copytree(src, dst)
    rec = load_json(dst / "params.json")
    rec["parameters"].update(params, out_dir=str(dst.resolve()))
    (dst / "params.json").write_text(json.dumps(rec))
    metrics = load_json(dst / "metrics.json")
    metrics.update({k: v for k, v in params.items() if k in metrics})
    (dst / "metrics.json").write_text(json.dumps(metrics))
    return dst


def test_report_collects_runs(tiny_run, tmp_path, capsys):
    _copy_run(tiny_run[0], tmp_path / "r30", n_points=30)
    _copy_run(tiny_run[0], tmp_path / "r60", n_points=60)
    assert main(["report", str(tmp_path / "r30"), str(tmp_path / "r60"), "--out", str(tmp_path / "rep")]) == 0
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "| tiny | r30 | n_points | 30 |" in md and "| tiny | r60 | n_points | 60 |" in md
    assert "<table" in (tmp_path / "rep" / "report.html").read_text()
    assert main(["report", str(tmp_path / "nothing")]) == 1
    assert capsys.readouterr().err.count("\n") == 1             # one line


@pytest.mark.parametrize("name", ["paper", "reproduce"])
def test_profiles_name_declared_parameters_in_range(name, monkeypatch):
    "Every entry of the shipped profiles is a parameter its chapter declares, with a value inside its declared range."
    monkeypatch.setattr(runs, "available_memory", lambda: None)    # the paper scale need not fit in this machine's free memory
    chapters = find_chapters(ROOT / "nbs")
    profile = load_profile(name)
    assert set(profile) >= {"mergers", "agn", "sed", "clusters"}
    for study, nb in chapters.items():
        declared = chapter_params(nb)
        missing = [k for k in profile.get(study, {}) if k not in declared]
        assert not missing, f"{study}: {name} profile sets {missing}, not declared by {nb.name}"
        for k, v in profile.get(study, {}).items(): declared[k].check(v, study=study)


def test_chapters_follow_conventions():
    "Each real chapter has one parameters cell with out_dir, device and seed."
    for study, nb_path in find_chapters(ROOT / "nbs").items():
        nb = nbformat.read(nb_path, as_version=4)
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, f"{nb_path.name}: {len(tagged)} parameters cells"
        assert {"out_dir", "device", "seed"} <= set(chapter_params(nb_path)), nb_path.name


def test_readme_is_generated_from_index():
    assert docs.build_docs(root=ROOT, check=True)


def test_docs_write_readme_and_html_with_figures(tiny_run, tmp_path):
    root = tmp_path / "proj"
    (root / "nbs").mkdir(parents=True)
    (root / "settings.ini").write_text("[DEFAULT]\n")
    (root / "index.ipynb").write_text((ROOT / "index.ipynb").read_text())
    with pytest.raises(ChapterError, match="stale"):
        docs.build_docs(root=root, check=True)                     # no README yet
    shutil.copytree(tiny_run[0], tmp_path / "r")
    shutil.copy(FIXTURES / "nbs" / "10_tiny.ipynb", root / "nbs")
    written = docs.build_docs([tmp_path / "r"], out=tmp_path / "docs", root=root)
    assert (root / "README.md").read_text() == (ROOT / "README.md").read_text()
    page = tmp_path / "docs" / "runs" / "tiny.html"               # a local run has its own page, labelled as such
    assert page in written and "data:image/png;base64" in page.read_text() and "Your run, " in page.read_text()
    assert 'href="../runs/tiny.html"' in (tmp_path / "docs" / "chapters" / "tiny.html").read_text()
    assert (tmp_path / "docs" / "index.html").exists()
    assert docs.build_docs(root=root, check=True)


def test_chapter_defaults_and_paper_profile_pass_their_checks(monkeypatch):
    "The ranges, choices and name rules each chapter declares accept its own defaults and the paper profile's values."
    monkeypatch.setattr(runs, "available_memory", lambda: None)    # the paper scale need not fit on this machine
    paper = load_profile("paper")
    for study, nb in find_chapters(ROOT / "nbs").items():
        declared = chapter_params(nb)
        runs._check_defaults(study, declared, {})
        runs.resolve_params(study, declared, {k: v for k, v in paper.get(study, {}).items() if k in declared})


def test_run_scale_and_report_mark_quick_runs(tmp_path):
    "A run is labelled by the profile whose values it holds; the report says quick runs are smoke tests."
    from astro_nb.claims import claim_row
    chapter = ROOT / "nbs" / "30_sed.ipynb"
    defaults = {k: p.default for k, p in runs.chapter_params(chapter).items() if p.literal}
    cases = {"quick": defaults, "reproduce": {**defaults, **runs.load_profile("reproduce")["sed"]},
             "custom": {**defaults, "n_train": 12345}}
    for name, params in cases.items():
        d = tmp_path / name; d.mkdir()
        save_json({"study": "sed", "chapter": str(chapter), "parameters": params}, d / "params.json")
        save_json({"state": "completed"}, d / "status.json")
        row = claim_row("c", 1.0, 0.2, 1.0, accept=[0.9, 1.0], paper=1.0, rule="r", unit="mocks", n=5)
        save_json({"chapter_seconds": 1.0, "claims": [row]}, d / "metrics.json")
        assert runs.run_scale(d) == name
    assert runs.run_scale(tmp_path / "missing") == "unknown"
    md = runs.report([tmp_path / "quick"], out=tmp_path)
    assert "smoke tests" in md and "| sed | quick | quick |" in md and "| sed | quick | c | 1 | [0.2, 1] over 5 mocks |" in md
    assert "| sed | quick | quick | 0 | 1 | 0 |" in md              # verdict counts: reproduced, inconclusive, not reproduced
    assert "| claims |" not in md                      # claims get their own table, not a raw list among the metrics
    assert "smoke tests" not in runs.report([tmp_path / "reproduce"], out=tmp_path)


def test_cli_sits_above_runs_docs_and_publish():
    "#20: the command is astro_nb.cli (the console script); importing runs loads none of docs, publish or cli."
    import configparser
    ini = configparser.ConfigParser(); ini.read(ROOT / "settings.ini")
    assert ini["DEFAULT"]["console_scripts"] == "astro-nb=astro_nb.cli:main"
    out = subprocess.run([sys.executable, "-c", "import sys, astro_nb.runs; "
                          "print(' '.join(sorted(m for m in sys.modules if m.startswith('astro_nb'))))"],
                         capture_output=True, text=True, check=True).stdout.split()
    assert "astro_nb.runs" in out and not {"astro_nb.docs", "astro_nb.publish", "astro_nb.cli"} & set(out), out
    assert not hasattr(runs, "main") and not hasattr(runs, "build_docs")
    import ast
    for mod in ("docs", "publish", "cli"):      # no module below cli imports it
        tree = ast.parse((ROOT / "astro_nb" / f"{mod}.py").read_text())
        found = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module]
        assert "cli" not in found and "astro_nb.cli" not in found, mod
    docs_top = [n.module for n in ast.parse((ROOT / "astro_nb" / "docs.py").read_text()).body if isinstance(n, ast.ImportFrom)]
    assert "runs" in docs_top                   # docs builds on runs at the top, not inside functions
