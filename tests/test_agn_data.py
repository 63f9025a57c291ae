"Bad input to the AGN loaders (issue 21 section 5): blank required cells, unreadable files and unmatched ids name the file; an empty light-curve sample stops in one line."
from pathlib import Path
import re

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from astro_nb.agn import data

DATA = Path(__file__).parent / "data" / "agn_dc"


def _objects(n=4):
    "The sample Object rows, replicated to `n` labelled objects with ids 1..n."
    base = pd.read_csv(DATA / "ObjectTable_sample.csv").iloc[:1]
    return pd.concat([base] * n, ignore_index=True).assign(objectId=np.arange(1, n + 1), **{"class": "Star"})


def _forced(n_obj=3, n_epochs=12):
    "A sorted ForcedSource table: `n_epochs` g epochs for each of objects 1..n_obj."
    oid = np.repeat(np.arange(1, n_obj + 1), n_epochs)
    return pd.DataFrame({"objectId": oid, "mjd": 50000.0 + np.tile(np.arange(n_epochs) * 7.0, n_obj),
                         "psMag": 20.0 + 0.1 * np.sin(np.arange(len(oid))), "psMagErr": 0.05, "filter": 1})


# ---------------------------------------------------------------- blank cells in required columns
def test_object_table_blank_id_refused(tmp_path):
    "A blank objectId is refused with the file, the column and the rows (it used to load as a NaN id)."
    df = _objects(8)
    df["objectId"] = df["objectId"].astype(float)
    df.loc[[1, 5], "objectId"] = np.nan
    p = tmp_path / "obj.csv"; df.to_csv(p, index=False)
    with pytest.raises(ValueError, match=re.escape(f"ObjectTable {p}: 2 blank cell(s) in the required column 'objectId', on lines [3, 7]")):
        data.load_object_table(p)
    # parquet: a null in an int64 column (pyarrow) and a pandas nullable Int64; rows are 0-based in file order
    t = pa.Table.from_pandas(_objects(8), preserve_index=False)
    t = t.set_column(0, "objectId", pa.array([1, 2, None, 4, 5, 6, 7, 8], pa.int64()))
    pq.write_table(t, tmp_path / "obj.parquet")
    with pytest.raises(ValueError, match=r"obj\.parquet: 1 blank cell\(s\) in the required column 'objectId', on rows \[2\] \(0-based"):
        data.load_object_table(tmp_path / "obj.parquet")
    many = _objects(9).assign(objectId=pd.array([None] * 7 + [8, 9], dtype="Int64"))
    many.to_parquet(tmp_path / "many.parquet")
    with pytest.raises(ValueError, match=r"rows \[0, 1, 2, 3, 4\] and 2 more"):
        data.load_object_table(tmp_path / "many.parquet")


def test_object_table_labels_and_measurements(tmp_path):
    "A blank class is unlabelled (dropped, counted) unless labels are required; NaN measurements load; unknown labels name rows."
    df = _objects(6)
    df.loc[[2, 4], "class"] = None
    df.loc[0, ["psMag_g", "psPm_ra", "extendedness_r", "stdColor_1"]] = np.nan
    p = tmp_path / "obj.csv"; df.to_csv(p, index=False)
    obj, rep = data.load_object_table(p)
    assert len(obj) == 4 and rep["n_unlabelled_dropped"] == 2 and np.isnan(obj["psMag_g"].iloc[0])
    with pytest.raises(ValueError, match=re.escape(f"ObjectTable {p}: 2 blank cell(s) in the required column 'class', on lines [4, 6]")):
        data.load_object_table(p, require_labels=True)
    with pytest.raises(ValueError, match=r"unknown class labels \['Blazar'\] \(1 rows, on lines \[5\]\)"):
        data.load_object_table(_save(tmp_path, df.assign(**{"class": ["Star", "Gal", "Qso", "Blazar", "Star", "Star"]}), "b.csv"))


def test_forced_blank_cells_refused_with_file_rows(tmp_path):
    "A blank objectId, mjd or filter in the ForcedSource table is refused with the file and its row (mjd used to be dropped silently)."
    fs = _forced(4, 10)                                           # 40 rows in row groups of 16
    for col, row in (("mjd", 21), ("filter", 33), ("objectId", 17)):
        bad = fs.astype({col: float})
        bad.loc[row, col] = np.nan
        if col == "objectId": bad["objectId"] = pd.array(fs["objectId"].where(bad["objectId"].notna()), dtype="Int64")
        p = tmp_path / f"fs_{col}.parquet"; bad.to_parquet(p, row_group_size=16)
        assert pq.ParquetFile(p).num_row_groups == 3
        msg = re.escape(f"ForcedSourceTable {p}: 1 blank cell(s) in the required column '{col}', on rows [{row}]")
        with pytest.raises(ValueError, match=msg):
            list(data.iter_light_curves(p))
        with pytest.raises(ValueError, match=msg):                # the Dask task's reader numbers rows the same way
            data._row_group_features(str(p), row // 16, {"maps": False})
    # CSV: file lines
    bad = fs.astype({"mjd": float}); bad.loc[3, "mjd"] = np.nan
    p = tmp_path / "fs.csv"; bad.to_csv(p, index=False)
    with pytest.raises(ValueError, match=re.escape(f"ForcedSourceTable {p}: 1 blank cell(s) in the required column 'mjd', on lines [5]")):
        data.extract_features(p, show_progress=False)
    # a NaN magnitude or error is a dropped, counted epoch, not an error
    ok = fs.copy(); ok.loc[[3, 4], "psMag"] = np.nan; ok.loc[5, "psMagErr"] = np.nan
    rep = {}
    lcs = next(data.iter_light_curves(_save(tmp_path, ok, "ok.parquet"), report=rep))
    assert rep == {"n_epochs_without_mag": 2, "n_epochs_bad_magerr": 1} and len(lcs["objectId"]) == 4
    # a bad filter code names the file and the row
    p = _save(tmp_path, fs.assign(filter=np.where(np.arange(len(fs)) == 7, 9, 1)), "filt.parquet")
    with pytest.raises(ValueError, match=re.escape(f"ForcedSourceTable {p}: filter must be an integer 0-4 (ugriz), found [9] on rows [7]")):
        list(data.iter_light_curves(p))


def _save(tmp_path, df, name):
    p = tmp_path / name
    df.to_csv(p, index=False) if name.endswith(".csv") else df.to_parquet(p)
    return p


# ---------------------------------------------------------------- unreadable files name the file
@pytest.mark.parametrize("kind, suffix", [("empty", ".parquet"), ("empty", ".csv"), ("text", ".parquet")])
def test_bad_files_name_the_file(tmp_path, kind, suffix):
    "A 0-byte file or text saved as .parquet: every loader's error names the file (pyarrow's own did not)."
    p = tmp_path / f"table{suffix}"
    if kind == "empty": p.write_bytes(b"")
    else: p.write_text("objectId,mjd,psMag,psMagErr,filter\n1,50000.0,20.0,0.1,1\n")
    want = "is empty (0 bytes)" if kind == "empty" else "cannot be read as parquet"
    for call in (lambda: data.load_object_table(p), lambda: list(data.iter_light_curves(p)),
                 lambda: data.extract_features(p, show_progress=False)):
        with pytest.raises(ValueError, match=re.escape(str(p)) + ".*" + re.escape(want)):
            call()
    if kind == "empty":
        good = _save(tmp_path, _objects(), "obj.csv")
        with pytest.raises(ValueError, match=re.escape(f"ForcedSourceTable {p} is empty (0 bytes)")):
            data.real_tables(str(good), str(p))


def test_unknown_suffix_and_folder_name_the_file(tmp_path):
    d = tmp_path / "dir.parquet"; d.mkdir()
    with pytest.raises((ValueError, FileNotFoundError), match=re.escape(str(d))):
        list(data.iter_light_curves(d))
    with pytest.raises(ValueError, match=re.escape(str(d))):
        data.load_object_table(d)
    t = _save(tmp_path, _forced(), "fs.parquet").rename(tmp_path / "fs.txt")
    with pytest.raises(ValueError, match=re.escape(f"ForcedSourceTable {t}: unknown format '.txt'")):
        data.extract_features(t, show_progress=False)


# ---------------------------------------------------------------- string objectIds
def test_string_object_ids_name_the_file(tmp_path):
    "String ids cannot be matched between the tables: refused naming the file (the ForcedSource error used to say only 'rows')."
    fs = _forced().assign(objectId=lambda d: d["objectId"].map(lambda i: f"obj{i}"))
    p = _save(tmp_path, fs, "fs.parquet")
    with pytest.raises(TypeError, match=re.escape(f"ForcedSourceTable {p}: objectId must hold the challenge's integer ids") + r".*'obj1'.*cannot be matched"):
        list(data.iter_light_curves(p, object_ids=np.arange(1, 4)))
    digits = _save(tmp_path, _forced().assign(objectId=lambda d: d["objectId"].astype(str)), "fs_digits.parquet")
    with pytest.raises(TypeError, match=re.escape(str(digits)) + ".*cannot be matched"):
        data.extract_features(digits, np.arange(1, 4), show_progress=False)
    obj = _save(tmp_path, _objects().assign(objectId=lambda d: d["objectId"].map(lambda i: f"obj{i}")), "obj.parquet")
    with pytest.raises(TypeError, match=re.escape(f"ObjectTable {obj}: objectId must hold") + ".*cannot be matched"):
        data.load_object_table(obj)


# ---------------------------------------------------------------- an empty light-curve sample
def test_drw_fit_of_a_block_without_epochs():
    "A block of curves with no epoch at all gives one (sigma, tau) per curve (it gave one per block: a broadcast error later)."
    t = np.full((100, 6), np.nan)
    s, tau = data.fit_drw(t, t, t)
    assert s.shape == tau.shape == (100,)
    assert data.drw_loglike(t[:3], t[:3], t[:3], np.ones((1, 7)), np.ones((1, 7))).shape == (3, 7)


def _one_epoch(n_obj):
    "Each object has one epoch, in u, i or z: whole blocks of objects without g or r (the DRW bands) used to break the fit."
    oid = np.arange(1, n_obj + 1)
    return pd.DataFrame({"objectId": oid, "mjd": 50000.0 + oid, "psMag": 20.0, "psMagErr": 0.05, "filter": np.array([0, 3, 4])[oid % 3]})


def test_empty_light_curve_sample_one_line(tmp_path):
    "Every object with at most one usable epoch: a ValueError naming the cause, not a numpy broadcast error."
    p = _save(tmp_path, _one_epoch(120), "fs.parquet")
    with pytest.raises(ValueError, match=re.escape(f"ForcedSourceTable {p}: an empty light-curve sample: none of the 120 objects")
                       + r".*more than one usable epoch"):
        data.extract_features(p, show_progress=False)
    # only the Object table's objects count: one of them with two epochs is a sample (its features are NaN, dropped later)
    two = pd.concat([_one_epoch(120), pd.DataFrame({"objectId": [121, 121], "mjd": [1.0, 2.0], "psMag": 20.0,
                                                    "psMagErr": 0.05, "filter": 2})], ignore_index=True)
    p2 = _save(tmp_path, two, "fs2.parquet")
    with pytest.raises(ValueError, match="none of the 60 objects"):
        data.extract_features(p2, np.arange(1, 61), show_progress=False)
    feats, maps, rep = data.extract_features(p2, show_progress=False)
    assert len(feats) == 121 and feats["n_epochs_r"].max() == 2 and np.isnan(feats["drw_sigma_g"]).all()
    # magnitudes lost to NaN leave one usable epoch: the same one line, with the dropped epochs counted
    lost = pd.concat([_one_epoch(60), _one_epoch(60).assign(mjd=lambda d: d["mjd"] + 0.5, psMag=np.nan)]).sort_values("objectId")
    with pytest.raises(ValueError, match="empty light-curve sample.*60 epochs without a magnitude"):
        data.extract_features(_save(tmp_path, lost, "fs3.parquet"), show_progress=False)


@pytest.mark.slow
def test_chapter_on_one_epoch_tables_fails_in_one_line(tmp_path):
    "The chapter on real-format tables whose objects have one epoch each stops at the features with the cause in one line."
    from astro_nb import runs
    obj = _save(tmp_path, _objects(120), "ObjectTable.parquet")
    fs = _save(tmp_path, _one_epoch(120), "ForcedSourceTable.parquet")
    nb = runs.find_chapters()["agn"]
    with pytest.raises(runs.ChapterFailed) as e:
        runs.run_chapter("agn", nb, {"object_table": str(obj), "forced_table": str(fs)}, tmp_path / "run", progress_bar=False)
    msg = str(e.value).splitlines()[0]
    assert "ValueError" in msg and "empty light-curve sample" in msg and "broadcast" not in str(e.value)
