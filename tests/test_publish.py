"Published records of completed runs (astro_nb.publish) and `astro-nb publish` / `report --check`."
import json
import shutil
import subprocess

import pytest

from astro_nb import publish
from astro_nb.claims import claim_row
from astro_nb.core import load_json, save_json
from astro_nb.cli import main
from astro_nb.runs import ChapterError


@pytest.fixture(autouse=True)
def reproduce_scale(monkeypatch):
    "The demo chapter has no reproduce profile, so its runs read as quick: these tests publish them as reproduce runs."
    monkeypatch.setattr(publish, "run_scale", lambda run: "reproduce")


def _project(tmp_path, state="completed"):
    root = tmp_path / "proj"; (root / "nbs").mkdir(parents=True)
    chap = root / "nbs" / "10_demo.ipynb"
    nb = {"cells": [{"cell_type": "code", "id": "a1", "source": "seed = 0", "metadata": {"tags": ["parameters"]},
                     "outputs": [], "execution_count": None},
                    {"cell_type": "code", "id": "a2", "source": "print(1)", "metadata": {"papermill": {"duration": 1}},
                     "outputs": [{"output_type": "stream", "name": "stdout", "text": "1\n"}], "execution_count": 3}],
          "metadata": {"kernelspec": {"name": "python3", "display_name": "python3", "language": "python"}},
          "nbformat": 4, "nbformat_minor": 5}
    chap.write_text(json.dumps(nb))
    run = tmp_path / "_runs" / "demo-1"; (run / "figures").mkdir(parents=True); (run / "checkpoints").mkdir()
    (run / "checkpoints" / "big.pt").write_bytes(b"0" * 1000)
    (run / "figures" / "f.png").write_bytes(b"png")
    (run / "demo.ipynb").write_text(json.dumps(nb))
    save_json({"study": "demo", "chapter": str(chap), "parameters": {"seed": 0, "out_dir": str(run)}}, run / "params.json")
    save_json({"state": state}, run / "status.json")
    claims = [claim_row("x ~ 1", 1.02, 0.95, 1.05, accept=[0.9, 1.1], paper=1.0, rule="r", unit="mocks", n=40)]
    save_json({"chapter_seconds": 90.0, "claims": claims}, run / "metrics.json")
    return root, chap, run


def test_publish_copies_the_readable_part(tmp_path):
    root, chap, run = _project(tmp_path)
    rec = publish.publish_run(run, root / "results" / "reproduce", root=root)
    assert not (rec / "checkpoints").exists() and (rec / "figures" / "f.png").exists() and (rec / ".notest").exists()
    nb = json.loads((rec / "demo.ipynb").read_text())
    assert nb["cells"][1]["outputs"][0]["text"] == "1\n" and nb["cells"][1]["execution_count"] is None
    r = load_json(rec / "record.json")
    assert r["chapter"] == "nbs/10_demo.ipynb" and r["chapter_sha256"] == publish.chapter_hash(chap) and r["wall_seconds"] == 90.0
    assert "out_dir" not in load_json(rec / "params.json")["parameters"]
    report = (root / "results" / "reproduce" / "report.md").read_text()
    assert "| demo | x ~ 1 |" in report and "[demo](demo/demo.ipynb)" in report


def test_republish_replaces_and_refuses_unfinished(tmp_path):
    root, chap, run = _project(tmp_path)
    dest = root / "results" / "reproduce"
    publish.publish_run(run, dest, root=root)
    (run / "figures" / "f.png").unlink()
    publish.publish_run(run, dest, root=root)
    assert not (dest / "demo" / "figures" / "f.png").exists()          # one record, never two runs mixed
    for state in ("failed", "running", "interrupted"):
        save_json({"state": state}, run / "status.json")
        with pytest.raises(ChapterError, match="not a completed run"):
            publish.publish_run(run, dest, root=root)
    assert (dest / "demo" / "record.json").exists()                    # the refused publish kept the old record


def test_stale_records_and_cli(tmp_path, monkeypatch, capsys):
    root, chap, run = _project(tmp_path)
    (root / "settings.ini").write_text("[DEFAULT]\n")
    monkeypatch.chdir(root)
    assert main(["publish", str(run)]) == 0
    assert main(["report", "--check"]) == 0
    chap.write_text(chap.read_text().replace("print(1)", "print(2)"))
    assert main(["report", "--check"]) == 1
    assert "demo: nbs/10_demo.ipynb changed since the record was made" in capsys.readouterr().err
    chap.unlink()
    assert publish.stale_records(root / "results" / "reproduce", root)[0].endswith("no longer exists")


def test_published_notebook_survives_nbdev_clean(tmp_path):
    "CI runs nbdev_clean over the tree: a published record must already be clean."
    from conftest import ROOT
    root, chap, run = _project(tmp_path)
    rec = publish.publish_run(run, tmp_path / "rec", root=root)
    before = (rec / "demo.ipynb").read_text()
    subprocess.run(["nbdev_clean", "--fname", str(rec / "demo.ipynb")], cwd=ROOT, check=True, capture_output=True)
    assert (rec / "demo.ipynb").read_text() == before


def test_index_shows_the_published_records():
    "README's claims table is the one the records give (regenerate with astro-nb publish)."
    from conftest import ROOT
    nb = json.loads((ROOT / "index.ipynb").read_text())
    cell = next("".join(c["source"]) for c in nb["cells"] if "".join(c["source"]).startswith(publish.INDEX_HEADING))
    assert cell == publish.index_section(ROOT / "results" / "reproduce", ROOT)


def test_record_keeps_the_code_the_run_ran(tmp_path, monkeypatch, capsys):
    "A chapter edited between the run and `publish` gives a record that `report --check` names as stale."
    from astro_nb.runs import run_source
    root, chap, run = _project(tmp_path)
    (root / "settings.ini").write_text("[DEFAULT]\n")
    save_json({"state": "completed", "source": run_source(chap)}, run / "status.json")
    assert run_source(chap)["chapter_sha256"] == publish.chapter_hash(chap)
    chap.write_text(chap.read_text().replace("print(1)", "print(2)"))      # edited after the run, before publishing
    rec = publish.publish_run(run, root / "results" / "reproduce", root=root)
    assert load_json(rec / "record.json")["chapter_sha256"] != publish.chapter_hash(chap)
    monkeypatch.chdir(root)
    assert main(["report", "--check"]) == 1 and "changed since the record was made" in capsys.readouterr().err


def test_publish_refuses_bad_study_names_and_claims_before_replacing(tmp_path):
    "#21: a crafted study name never deletes or escapes the destination; malformed claims never replace a record."
    root, chap, run = _project(tmp_path)
    dest = root / "results" / "reproduce"
    publish.publish_run(run, dest, root=root)
    before = sorted(p.relative_to(dest) for p in dest.rglob("*"))
    params = load_json(run / "params.json")
    for bad in ("", "../escape", "a/b", None):
        save_json({**params, "study": bad}, run / "params.json")
        with pytest.raises(ChapterError, match="not a study name"):
            publish.publish_run(run, dest, root=root)
    save_json(params, run / "params.json")
    m = load_json(run / "metrics.json")
    for claims in ([{"claim": "x", "measured": 1.0, "uncertainty": "[0.2, 1]", "paper": 1.0, "verdict": "reproduced"}],
                   [{**m["claims"][0], "verdict": "not reproduced"}], "not a list"):
        save_json({**m, "claims": claims}, run / "metrics.json")
        with pytest.raises(ChapterError, match="cannot be published"):
            publish.publish_run(run, dest, root=root)
    assert sorted(p.relative_to(dest) for p in dest.rglob("*")) == before and not (tmp_path / "escape").exists()


def test_publish_skips_symlinked_figures_and_leaves_other_readmes(tmp_path):
    root, chap, run = _project(tmp_path)
    secret = tmp_path / "secret.txt"; secret.write_text("token")
    (run / "figures" / "leak.png").symlink_to(secret)
    (root / "README.md").write_text("mine")
    rec = publish.publish_run(run, tmp_path / "elsewhere", root=root)
    assert (rec / "figures" / "f.png").exists() and not (rec / "figures" / "leak.png").exists()
    assert (root / "README.md").read_text() == "mine"


def test_report_counts_verdicts(tmp_path):
    root, chap, run = _project(tmp_path)
    dest = root / "results" / "reproduce"
    publish.publish_run(run, dest, root=root)
    assert publish.verdict_summary(dest).to_dict("records") == [
        {"study": "demo", "reproduced": 1, "inconclusive": 0, "not reproduced": 0}]
    report = (dest / "report.md").read_text()
    assert "## Verdicts" in report and "| demo | 1 | 0 | 0 |" in report


def _git(root, *args):
    subprocess.run(["git", *args], cwd=root, check=True, capture_output=True,
                   env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                        "GIT_COMMITTER_EMAIL": "t@t", "HOME": str(root), "PATH": "/usr/bin:/bin"})


def test_publish_refuses_a_run_from_a_dirty_tree_naming_the_files(tmp_path):
    "#23: the code every record ran from is a commit; a run made with uncommitted changes is refused."
    from astro_nb.runs import run_source
    root, chap, run = _project(tmp_path)
    _git(root, "init", "-q"); _git(root, "add", "-A"); _git(root, "commit", "-qm", "c")
    chap.write_text(chap.read_text().replace("print(1)", "print(3)"))
    src = run_source(chap)
    assert src["commit"].endswith("-dirty") and src["dirty"] == ["nbs/10_demo.ipynb"]
    save_json({"state": "completed", "source": src}, run / "status.json")
    with pytest.raises(ChapterError, match=r"uncommitted changes \(nbs/10_demo.ipynb\)"):
        publish.publish_run(run, root / "results" / "reproduce", root=root)
    assert not (root / "results" / "reproduce" / "demo").exists()
    _git(root, "commit", "-qam", "d")
    save_json({"state": "completed", "source": run_source(chap)}, run / "status.json")
    rec = publish.publish_run(run, root / "results" / "reproduce", root=root)
    assert not load_json(rec / "record.json")["commit"].endswith("-dirty")
    assert load_json(rec / "record.json")["study_sha256"] == publish.study_hash(root, "demo")


def test_report_check_names_mixed_commits_and_changed_packages(tmp_path, monkeypatch, capsys):
    root, chap, run = _project(tmp_path)
    (root / "settings.ini").write_text("[DEFAULT]\n")
    part = root / "nbs" / "11_demo_sim.ipynb"; part.write_text(chap.read_text())
    dest = root / "results" / "reproduce"
    publish.publish_run(run, dest, root=root)
    other = dest / "other"; other.mkdir()
    save_json({**load_json(dest / "demo" / "record.json"), "study": "other", "commit": "f" * 40, "study_sha256": None,
               "chapter": "nbs/10_demo.ipynb"}, other / "record.json")
    save_json({"claims": []}, other / "metrics.json")
    assert "do not share one commit" in publish.mixed_commits(dest)
    monkeypatch.chdir(root)
    assert main(["report", "--check"]) == 1 and "do not share one commit" in capsys.readouterr().err
    part.write_text(part.read_text().replace("print(1)", "print(5)"))
    assert any("package notebooks" in s for s in publish.stale_records(dest, root))


def test_record_names_no_path_of_the_machine(tmp_path):
    "#23: the executed chapter's out_dir and 'run folder' lines become paths relative to the repository."
    root, chap, run = _project(tmp_path)
    nb = json.loads((run / "demo.ipynb").read_text())
    nb["cells"][1]["outputs"][0]["text"] = f"Chapter('demo': run folder {run.resolve()}, device cpu)\n"
    nb["cells"][0]["source"] = f'seed = 0\nout_dir = "{run.resolve()}"\nroot = "{root.resolve()}/nbs"'
    (run / "demo.ipynb").write_text(json.dumps(nb))
    save_json({**load_json(run / "status.json"), "note": str(run.resolve())}, run / "status.json")
    rec = publish.publish_run(run, root / "results" / "reproduce", root=root)
    assert publish.absolute_paths(rec, [root.resolve(), tmp_path.resolve()]) == []
    text = (rec / "demo.ipynb").read_text()
    assert "run folder _runs/demo-1" in text and 'root = \\"./nbs\\"' in text


# ---- #21: a publish that validates, then swaps ---------------------------------------------------------------

def _tree(folder):
    return {p.relative_to(folder).as_posix(): (p.read_bytes() if p.is_file() else None) for p in sorted(folder.rglob("*"))}


def test_publish_refuses_a_study_that_is_not_a_chapter(tmp_path):
    root, chap, run = _project(tmp_path)
    dest = root / "results" / "reproduce"
    publish.publish_run(run, dest, root=root)
    before = _tree(dest)
    save_json({**load_json(run / "params.json"), "study": "report"}, run / "params.json")   # a valid name, no chapter
    (run / "report.ipynb").write_text((run / "demo.ipynb").read_text())
    with pytest.raises(ChapterError, match="'report', which is not a chapter of .*nbs \\(demo\\)"):
        publish.publish_run(run, dest, root=root, force=True)
    assert _tree(dest) == before


def test_quick_and_unknown_scale_runs_are_refused_unless_forced(tmp_path, monkeypatch, capsys):
    from astro_nb import runs
    monkeypatch.setattr(publish, "run_scale", runs.run_scale)
    root, chap, run = _project(tmp_path)
    assert runs.run_scale(run) == "quick"
    dest = root / "results" / "reproduce"
    with pytest.raises(ChapterError, match="it is a quick-scale run .*--force publishes it anyway"):
        publish.publish_run(run, dest, root=root)
    assert not (dest / "demo").exists()
    save_json({**load_json(run / "params.json"), "chapter": "nowhere/10_demo.ipynb"}, run / "params.json")
    assert runs.run_scale(run) == "unknown"
    with pytest.raises(ChapterError, match="unknown-scale run"):
        publish.publish_run(run, dest, root=root)
    (root / "settings.ini").write_text("[DEFAULT]\n")
    monkeypatch.chdir(root)
    assert main(["publish", str(run), "--dest", str(dest)]) == 1 and "unknown-scale run" in capsys.readouterr().err
    assert main(["publish", str(run), "--dest", str(dest), "--force"]) == 0
    forced = load_json(dest / "demo" / "record.json")["forced"]
    assert len(forced) == 1 and forced[0].startswith("it is a unknown-scale run")


def test_a_run_from_another_checkout_is_refused_unless_forced(tmp_path):
    root, chap, run = _project(tmp_path)
    other = tmp_path / "clone"; (other / "nbs").mkdir(parents=True)
    save_json({"state": "completed", "source": {"checkout": str(other), "commit": "a" * 40}}, run / "status.json")
    dest = root / "results" / "reproduce"
    with pytest.raises(ChapterError, match=f"another checkout \\({other}\\)"):
        publish.publish_run(run, dest, root=root)
    save_json({"state": "completed"}, run / "status.json")                      # older runs: the chapter path tells
    save_json({**load_json(run / "params.json"), "chapter": str(other / "nbs" / "10_demo.ipynb")}, run / "params.json")
    with pytest.raises(ChapterError, match="another checkout"):
        publish.publish_run(run, dest, root=root)
    rec = publish.publish_run(run, dest, root=root, force=True)
    assert load_json(rec / "record.json")["chapter"] == "nbs/10_demo.ipynb"     # this checkout's chapter, never a machine path
    assert publish.absolute_paths(rec, [tmp_path.resolve()]) == []


def test_a_notebook_showing_stderr_is_refused_naming_the_cell(tmp_path):
    root, chap, run = _project(tmp_path)
    nb = json.loads((run / "demo.ipynb").read_text())
    nb["cells"][1]["outputs"].append({"output_type": "stream", "name": "stderr", "text": "100%|####| 5/5 [00:01]\n"})
    (run / "demo.ipynb").write_text(json.dumps(nb))
    with pytest.raises(ChapterError, match=r"shows 1 stderr/error output\(s\) \(cell 1: 100%"):
        publish.publish_run(run, root / "results" / "reproduce", root=root)
    assert not (root / "results" / "reproduce" / "demo").exists()


def test_a_failed_publish_keeps_the_old_record_and_leaves_no_temporary_folder(tmp_path, monkeypatch):
    root, chap, run = _project(tmp_path)
    dest = root / "results" / "reproduce"
    publish.publish_run(run, dest, root=root)
    before = _tree(dest)
    (run / "figures" / "new.png").write_bytes(b"png2")
    def broken(*a, **k): raise OSError(28, "No space left on device")
    monkeypatch.setattr(publish, "relative_paths", broken)                     # fails while the record is being built
    with pytest.raises(OSError, match="No space left"):
        publish.publish_run(run, dest, root=root)
    assert _tree(dest) == before
    monkeypatch.undo(); monkeypatch.setattr(publish, "run_scale", lambda run: "reproduce")
    real, calls = publish.os.rename, []
    def rename(a, b):                                                           # the new record cannot be renamed in
        calls.append((a, b))
        if len(calls) == 2: raise OSError(18, "Invalid cross-device link")
        return real(a, b)
    monkeypatch.setattr(publish.os, "rename", rename)
    with pytest.raises(OSError, match="cross-device"):
        publish.publish_run(run, dest, root=root)
    monkeypatch.setattr(publish.os, "rename", real)
    assert _tree(dest) == before                                                # the old record renamed back, whole
    rec = publish.publish_run(run, dest, root=root)
    assert (rec / "figures" / "new.png").exists() and sorted(p.name for p in dest.iterdir()) == ["demo", "report.md"]


def test_a_record_that_does_not_validate_replaces_nothing(tmp_path, monkeypatch):
    root, chap, run = _project(tmp_path)
    dest = root / "results" / "reproduce"
    publish.publish_run(run, dest, root=root)
    before = _tree(dest)
    nb = json.loads((run / "demo.ipynb").read_text())
    nb["cells"][1]["outputs"][0]["text"] = f"saved to {run.resolve()}/figures\n"
    (run / "demo.ipynb").write_text(json.dumps(nb))
    monkeypatch.setattr(publish, "relative_paths", lambda *a: [])               # a machine path would stay in the record
    with pytest.raises(ChapterError, match="would name paths of this machine"):
        publish.publish_run(run, dest, root=root)
    assert _tree(dest) == before


def test_readme_is_rewritten_only_for_the_checkouts_own_results(tmp_path):
    root, chap, run = _project(tmp_path)
    (root / "index.ipynb").write_text(json.dumps({"cells": [{"cell_type": "markdown", "id": "x", "metadata": {},
                                                             "source": "# demo"}], "metadata": {}, "nbformat": 4,
                                                  "nbformat_minor": 5}))
    (root / "README.md").write_text("mine")
    publish.publish_run(run, root / "scratch" / "records", root=root)          # inside the checkout, not its results/
    assert (root / "README.md").read_text() == "mine" and "Published results" not in (root / "index.ipynb").read_text()
    publish.publish_run(run, root / "results" / "reproduce", root=root)
    assert "## Published results" in (root / "README.md").read_text()


def test_a_publish_cut_short_is_not_listed_as_a_record(tmp_path):
    root, chap, run = _project(tmp_path)
    dest = root / "results" / "reproduce"
    publish.publish_run(run, dest, root=root)
    shutil.copytree(dest / "demo", dest / ".demo.publishing-abc")          # a kill -9 between validating and swapping
    assert list(publish.published_records(dest)) == ["demo"]
    assert ".demo.publishing" not in publish.write_claims_report(dest).read_text()
