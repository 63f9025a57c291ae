"The claims protocol (astro_nb.claims): the three-way verdict at every edge, rows as data, the intervals."
import json
import math

import numpy as np
import pytest

from astro_nb import claims


REGION = [0.68, 0.78]


@pytest.mark.parametrize("low, high, accept, expected", [
    (0.70, 0.76, REGION, "reproduced"),            # inside
    (0.68, 0.78, REGION, "reproduced"),            # touching both edges from inside
    (0.60, 0.76, REGION, "inconclusive"),          # straddles the lower edge
    (0.70, 0.90, REGION, "inconclusive"),          # straddles the upper edge
    (0.50, 0.95, REGION, "inconclusive"),          # wider than the region
    (0.50, 0.67, REGION, "not reproduced"),        # wholly below
    (0.79, 0.90, REGION, "not reproduced"),        # wholly above
    (0.01, 0.20, [0, None], "reproduced"),         # open upper end
    (-0.01, 0.20, [0, None], "inconclusive"),
    (-0.2, -0.01, [0, None], "not reproduced"),
    (0.40, 0.55, [None, 0.55], "reproduced"),      # open lower end
    (0.56, 0.60, [None, 0.55], "not reproduced"),
    (1.0, 1.0, [0.95, 1.0], "reproduced"),         # degenerate interval inside
    (0.9, 0.9, [0.95, 1.0], "not reproduced"),     # degenerate interval outside
    (0.95, 0.95, [0.95, 1.0], "reproduced"),       # degenerate interval on the edge
    (float("nan"), 0.9, REGION, "inconclusive"),   # not measured
    (0.7, float("nan"), REGION, "inconclusive"),
    (None, None, REGION, "inconclusive"),
])
def test_verdict_edges(low, high, accept, expected):
    assert claims.verdict(low, high, accept) == expected


@pytest.mark.parametrize("accept, match", [
    ([None, None], "accepts everything"), ([1, 0], "reversed"), ([0, math.inf], "finite"), ((0.5,), r"\[a, b\]"),
    ("0.5", r"\[a, b\]"), ([0, "1"], "number"),
])
def test_bad_regions_are_refused(accept, match):
    with pytest.raises((ValueError, TypeError), match=match):
        claims.verdict(0.1, 0.2, accept)


def test_reversed_interval_is_refused():
    with pytest.raises(ValueError, match="low"):
        claims.verdict(0.9, 0.1, [0, 1])


def _row(**kw):
    base = dict(accept=[0.68, 0.78], paper=0.73, rule="the paper's quoted spread", unit="folds x seeds", n=15)
    base.update(kw)
    return claims.claim_row("accuracy ~0.73", 0.72, kw.pop("low", 0.70), kw.pop("high", 0.75), **{
        k: v for k, v in base.items() if k not in ("low", "high")})


def test_claim_row_is_data_and_json():
    r = _row()
    assert set(r) == set(claims.ROW_KEYS) and r["verdict"] == "reproduced"
    assert all(isinstance(r[k], float) for k in ("measured", "low", "high")) and isinstance(r["n"], int)
    assert json.loads(json.dumps(r)) == r
    assert claims.check_rows([r]) == [r]
    assert claims.claim_row("c", 1, 0.9, 1.0, accept=(0.8, None), paper=(0.9, 1.0), rule="r", unit="mocks",
                            n=np.int64(4))["paper"] == [0.9, 1.0]


@pytest.mark.parametrize("change, match", [
    (dict(rule=" "), "rule"), (dict(unit=""), "unit"), (dict(n=-1), "n must"), (dict(n=2.5), "n must"),
    (dict(accept=[None, None]), "accepts everything"),
])
def test_claim_row_refuses_incomplete_rows(change, match):
    with pytest.raises(ValueError, match=match):
        _row(**change)


def test_check_rows_refuses_a_verdict_its_numbers_do_not_give():
    r = _row()
    with pytest.raises(ValueError, match="give 'reproduced'"):
        claims.check_rows([{**r, "verdict": "not reproduced"}])
    with pytest.raises(ValueError, match="exactly the keys"):
        claims.check_rows([{**r, "uncertainty": "[0.7, 0.75]"}])
    with pytest.raises(TypeError, match="list"):
        claims.check_rows(r)


def test_wide_smoke_interval_is_never_reproduced():
    "The main job's failure: 0.6 [0.2, 1] against 0.73 was 'reproduced'; now it is inconclusive."
    assert claims.verdict(0.2, 1.0, [0.68, 0.78]) == "inconclusive"


def test_clopper_pearson_matches_known_values_and_is_not_degenerate():
    lo, hi = claims.clopper_pearson(20, 20)
    assert lo == pytest.approx(0.8316, abs=1e-3) and hi == 1.0
    lo, hi = claims.clopper_pearson(7, 10)
    assert (lo, hi) == (pytest.approx(0.3475, abs=1e-3), pytest.approx(0.9333, abs=1e-3))
    with pytest.raises(ValueError, match="k <= n"):
        claims.clopper_pearson(5, 4)
    with pytest.raises(ValueError, match="level"):
        claims.clopper_pearson(1, 4, level=1)


def test_clopper_pearson_covers_at_its_level():
    rng = np.random.default_rng(1)
    k = rng.binomial(30, 0.9, 4000)
    lo, hi = claims.clopper_pearson(k, np.full_like(k, 30))
    assert np.mean((lo <= 0.9) & (0.9 <= hi)) >= 0.95


def test_paired_bootstrap_is_tighter_than_unpaired_and_refuses_nan():
    rng = np.random.default_rng(2)
    hard = rng.uniform(size=3000) < 0.3
    a = (~hard | (rng.uniform(size=3000) < 0.3)).astype(float); b = (~hard).astype(float)
    paired = claims.paired_bootstrap(a, b, n_boot=300)
    ua = claims.bootstrap_ci(np.mean, a, n_boot=300, seed=1); ub = claims.bootstrap_ci(np.mean, b, n_boot=300, seed=2)
    assert paired["low"] > 0 and (paired["high"] - paired["low"]) < 0.7 * math.hypot(ua["high"] - ua["low"], ub["high"] - ub["low"])
    with pytest.raises(ValueError, match="same objects"):
        claims.paired_bootstrap([1.0, np.nan], [0.0, 1.0])


def test_coverage_claim_calibrated_overconfident_and_too_few():
    rng = np.random.default_rng(3)
    u = rng.uniform(size=(5000, 2))
    assert claims.coverage_claim("c", u, 0.05, paper="calibrated")["verdict"] == "reproduced"
    over = np.clip(0.5 + 2 * (rng.uniform(size=(5000, 2)) - 0.5), 0, 1)
    assert claims.coverage_claim("c", over, 0.05, paper="calibrated")["verdict"] == "not reproduced"
    assert claims.coverage_claim("c", u[:25], 0.05, paper="calibrated")["verdict"] == "inconclusive"
    r = claims.coverage_claim("c", u[:500], 0.05, paper="calibrated", floor=0.06)
    assert r["low"] <= r["measured"] <= r["high"] and "0.060" in r["rule"] and r["n"] == 500
    with pytest.raises(ValueError, match="tolerance"):
        claims.coverage_claim("c", u, 0, paper="calibrated")


def test_c2st_claim_judged_by_the_whole_interval():
    near = claims.c2st_claim("c", [0.50, 0.53, 0.55, 0.58, 0.62, 0.66], floor=0.51, margin=0.05, paper="p", n_boot=500)
    assert near["verdict"] == "inconclusive" and near["accept"] == [None, pytest.approx(0.56)]
    assert claims.c2st_claim("c", [np.nan, np.nan], 0.51, 0.05, paper="p")["n"] == 0


def test_claims_frame_counts_and_old_records():
    rows = [_row(), _row(low=0.5, high=0.9), claims.claim_row("x", 0.1, 0.05, 0.2, accept=[0.5, None], paper="p", rule="r",
                                                                 unit="mocks", n=3)]
    assert claims.verdict_counts(rows) == {"reproduced": 1, "inconclusive": 1, "not reproduced": 1}
    df = claims.claims_frame(rows, study="mergers")
    assert list(df.columns) == ["study", "claim", "measured", "interval", "accept", "paper", "verdict"]
    assert df["interval"][0] == "[0.7, 0.75] over 15 folds x seeds" and df["accept"][2] == "[0.5, ...]"
    old = {"claim": "c", "measured": 0.6, "uncertainty": "[0.2, 1]", "paper": 0.73, "verdict": "direction only"}
    assert claims.claims_frame([old])["interval"][0] == "[0.2, 1]"
    assert claims.verdict_counts([old])["direction only"] == 1


def test_plot_claims_one_panel_per_row():
    import matplotlib; matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig = claims.plot_claims([_row(), _row(low=0.5, high=0.9)])
    assert len(fig.axes) == 2
    plt.close(fig)
    with pytest.raises(ValueError, match="no claims"):
        claims.plot_claims([])


def test_bootstrap_ci_covers_and_groups():
    rng = np.random.default_rng(0)
    x = rng.normal(1.0, 1.0, 400)
    ci = claims.bootstrap_ci(np.mean, x, n_boot=400)
    assert ci["low"] < 1.0 < ci["high"] and ci["std"] == pytest.approx(1 / 20, rel=0.25)
    with pytest.raises(ValueError, match="non-empty"):
        claims.bootstrap_ci(np.mean, np.ones(0))
    with pytest.raises(ValueError, match="level"):
        claims.bootstrap_ci(np.mean, x, level=1.5)


def test_bootstrap_groups_resampled_whole():
    "Each resample holds every drawn group with all its rows (counts are multiples of the group sizes)."
    groups = np.array([0, 0, 0, 1, 2, 2])
    seen = []
    def stat(g):
        c = np.bincount(g, minlength=3); seen.append(c)
        return float(len(g))
    claims.bootstrap_ci(stat, groups, groups=groups, n_boot=300)
    c = np.array(seen[:-1])
    assert np.all(c[:, 0] % 3 == 0) and np.all(c[:, 2] % 2 == 0) and np.all(c @ [1, 1, 1] >= 3)
    assert len({tuple(x) for x in c}) > 3                      # it does resample