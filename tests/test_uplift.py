"""Uplift learners, Qini metrics, campaign preparation and `crm ml uplift` on a synthetic
randomized campaign with a known heterogeneous effect."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from scipy.stats import rankdata

from crm.cli.uplift import uplift_group
from ml import uplift as U


def campaign(n: int = 10_000, seed: int = 0, share: float = 0.6) -> pd.DataFrame:
    """Players with numeric features and a categorical segment; 60% treated at random.

    True effect on P(deposit): +0.25 for slots players with x2 > 0, +0.15 for live players
    with x1 > 0, 0 for everyone else except poker players (10%), for whom it is -0.15.
    ``ngr`` is a continuous outcome with effect 40 * tau. ``tau`` is the truth (not a feature).
    """
    rng = np.random.default_rng(seed)
    x1, x2, x3 = rng.normal(size=n), rng.normal(size=n), rng.uniform(size=n)
    seg = rng.choice(["slots", "live", "sports", "poker"], size=n, p=[0.4, 0.25, 0.25, 0.1])
    base = 1 / (1 + np.exp(-(-1.0 + 0.6 * x1 + 0.4 * (seg == "live"))))
    tau = (
        np.where((seg == "slots") & (x2 > 0), 0.25, 0.0)
        + np.where((seg == "live") & (x1 > 0), 0.15, 0.0)
        - np.where(seg == "poker", 0.15, 0.0)
    )
    p1 = np.clip(base + tau, 0.01, 0.99)
    tau = p1 - base
    t = rng.uniform(size=n) < share
    y = (rng.uniform(size=n) < np.where(t, p1, base)).astype(int)
    ngr = 20 + 10 * x1 + 40 * np.where(t, tau, 0.0) + rng.normal(scale=5, size=n)
    return pd.DataFrame({
        "player_id": np.arange(n), "x1": x1, "x2": x2, "x3": x3, "segment": seg,
        "group": np.where(t, "treatment", "control"), "deposited": y, "ngr": ngr, "tau": tau,
    })


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    return campaign()


@pytest.fixture(scope="module")
def trained(data):
    return U.train_uplift(data.drop(columns=["tau", "ngr"]), "group", "deposited", seed=0)


def _valid(res, data, col: str = "tau"):
    pos = res.valid_index
    return res.prepared.y[pos], res.prepared.treatment[pos], data[col].to_numpy()[res.prepared.index][pos]


# ---------------------------------------------------------------------------- learners


def test_learners_beat_random_and_approach_the_oracle(trained, data):
    assert set(trained.metrics) == {"t", "x", "s", "ct"}
    assert trained.prepared.control_value == "control" and trained.prepared.treated_value == "treatment"
    assert trained.prepared.schema.categorical == ("segment",)
    assert "player_id" not in trained.prepared.schema.names
    y, t, tau = _valid(trained, data)
    fractions = {n: U.oracle_fractions(y, t, s, tau) for n, s in trained.valid_scores.items()}
    for name, m in trained.metrics.items():
        assert m["qini_auc"] > 0, (name, m)
        assert m["uplift_at_10"] > m["ate"], (name, m)
    for name in ("t", "x", "s"):
        assert fractions[name]["expected"] > 0.55, fractions
        assert fractions[name]["observed"] > 0.45, fractions
    assert fractions["ct"]["expected"] > 0.4, fractions
    assert trained.selected == max(trained.metrics, key=lambda n: trained.metrics[n]["qini_auc"])
    # negative effects are found: poker players get the lowest predicted uplift on average
    s = pd.Series(trained.model.predict_uplift(data), index=data["segment"])
    assert s.groupby(level=0).mean().idxmin() == "poker"


def test_continuous_outcome_uses_regressors_and_skips_class_transformation(data):
    res = U.train_uplift(data.drop(columns=["tau", "deposited"]), "group", "ngr", seed=1)
    assert res.skipped == {"ct": "class transformation needs a binary (0/1) outcome"}
    assert not res.prepared.binary
    y, t, tau = _valid(res, data)
    for name, s in res.valid_scores.items():
        assert res.metrics[name]["qini_auc"] > 0
        assert U.oracle_fractions(y, t, s, tau)["expected"] > 0.6, name
    with pytest.raises(ValueError, match="binary"):
        U.ClassTransformation().fit(res.prepared.X, res.prepared.treatment, res.prepared.y)


def test_x_learner_propensity_options(data):
    prep = U.prepare(data.iloc[:3000], "group", "deposited", features=["x1", "x2", "segment"])
    known = U.XLearner(seed=0).fit(prep.X, prep.treatment, prep.y)
    assert known.share_ == pytest.approx(prep.treatment.mean())
    est = U.XLearner(seed=0, propensity="estimate").fit(prep.X, prep.treatment, prep.y)
    g = est.propensity_of(prep.X)
    assert ((g >= 0.05) & (g <= 0.95)).all() and abs(g.mean() - prep.treatment.mean()) < 0.05
    fixed = U.XLearner(seed=0, propensity=0.5).fit(prep.X, prep.treatment, prep.y)
    assert np.isfinite(fixed.predict_uplift(prep.X)).all()
    with pytest.raises(ValueError, match="propensity"):
        U.XLearner(propensity=1.5)
    with pytest.raises(ValueError, match="both arms"):
        U.TLearner().fit(prep.X, np.ones(len(prep.X), dtype=bool), prep.y)


def test_learners_are_deterministic(data):
    prep = U.prepare(data.iloc[:2000], "group", "deposited")
    a = U.TLearner(seed=3).fit(prep.X, prep.treatment, prep.y).predict_uplift(prep.X)
    b = U.TLearner(seed=3).fit(prep.X, prep.treatment, prep.y).predict_uplift(prep.X)
    np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------------------- metrics


def test_metric_sanity(data):
    y, t, tau = data["deposited"].to_numpy(), data["group"].eq("treatment").to_numpy(), data["tau"].to_numpy()
    oracle = U.oracle_qini_auc(y, t, tau)
    assert oracle > 0
    # a perfect ordering (any strictly monotone transform of the truth, e.g. its ranks) gets the oracle's Qini
    ranks = rankdata(tau, method="dense")
    assert U.qini_auc(y, t, ranks) == pytest.approx(oracle)
    assert U.oracle_fractions(y, t, ranks, tau) == pytest.approx({"observed": 1.0, "expected": 1.0})
    # the reverse ordering is worse than random; random orderings are about 0
    assert U.qini_auc(y, t, -tau) < 0
    rng = np.random.default_rng(5)
    rand = [U.qini_auc(y, t, rng.normal(size=len(y))) / oracle for _ in range(5)]
    assert abs(np.mean(rand)) < 0.1 and max(abs(r) for r in rand) < 0.25
    # a constant score is exactly the random line
    assert U.qini_auc(y, t, np.zeros(len(y))) == pytest.approx(0.0, abs=1e-12)
    assert U.expected_qini_auc(np.zeros(len(y)), tau) == pytest.approx(0.0, abs=1e-12)
    # the curve ends at the observed ATE; AUUC of a random score is about ATE / 2
    ate = y[t].mean() - y[~t].mean()
    curve = U.qini_curve(y, t, tau)
    assert curve["fraction"].iloc[[0, -1]].tolist() == [0.0, 1.0]
    assert curve["qini"].iloc[-1] == pytest.approx(ate)
    assert U.auuc(y, t, np.zeros(len(y))) == pytest.approx(ate / 2)
    m = U.uplift_metrics(y, t, tau)
    assert set(m) == {"qini_auc", "auuc", "uplift_at_10", "uplift_at_20", "uplift_at_30", "ate"}
    assert m["uplift_at_10"] > m["uplift_at_30"] > m["ate"]


def test_uplift_at_small_example():
    y = np.array([1, 0, 1, 0, 0, 1, 0, 0, 0, 0])
    t = np.array([1, 0, 1, 0, 1, 0, 1, 0, 1, 0], dtype=bool)
    s = np.arange(10, 0, -1, dtype=float)
    # top 40%: treated rows 0, 2 (both 1), control rows 1, 3 (both 0)
    assert U.uplift_at(y, t, s, 0.4) == pytest.approx(1.0)
    assert np.isnan(U.uplift_at(y, t, s, 0.1))  # only a treated row in the top 10%
    with pytest.raises(ValueError, match="both treated and control"):
        U.qini_auc(y, np.ones(10, dtype=bool), s)


# ---------------------------------------------------------------------------- prepare


def _small(n: int = 200, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "player_id": np.arange(n),
        "age": rng.integers(18, 70, size=n),
        "country": rng.choice(["MT", "DE", "SE"], size=n),
        "arm": rng.choice(["A", "B", "holdout"], size=n),
        "t01": rng.integers(0, 2, size=n),
        "converted": rng.integers(0, 2, size=n),
        "flat": np.ones(n),
    })


def test_prepare_numeric_and_categorical():
    df = _small().drop(columns="flat")
    p = U.prepare(df, "t01", "converted")
    assert (p.control_value, p.treated_value) == ("0", "1")
    assert p.schema.names == ("age", "country", "arm") and p.schema.kinds == ("numeric", "categorical", "categorical")
    assert isinstance(p.X["country"].dtype, pd.CategoricalDtype) and p.X["age"].dtype == np.float64
    assert p.binary and p.rows == len(df) and p.treatment.sum() == (df["t01"] == 1).sum()


def test_prepare_pair_out_of_three_arms():
    df = _small()
    with pytest.raises(ValueError, match=r"3 arms \(.*A.*B.*holdout.*\).*--control-value"):
        U.prepare(df, "arm", "converted")
    with pytest.raises(ValueError, match="not binary after selecting control 'holdout'.*A, B"):
        U.prepare(df, "arm", "converted", control_value="holdout")
    p = U.prepare(df, "arm", "converted", control_value="holdout", treated_value="b")  # case-insensitive
    assert (p.control_value, p.treated_value) == ("holdout", "B")
    assert p.rows == df["arm"].isin(["holdout", "B"]).sum() and p.rows_other_arms == (df["arm"] == "A").sum()
    assert p.treatment.sum() == (df["arm"] == "B").sum()


def test_prepare_errors():
    df = _small()
    with pytest.raises(ValueError, match=r"outcome column 'revenue' not in the data; available columns: player_id"):
        U.prepare(df, "t01", "revenue")
    with pytest.raises(ValueError, match="treatment column 'variant' not in the data"):
        U.prepare(df, "variant", "converted")
    with pytest.raises(ValueError, match=r"feature column 'tenure' not in the data; available columns: .*country"):
        U.prepare(df, "t01", "converted", features=["age", "tenure"])
    with pytest.raises(ValueError, match="outcome column 'flat' is constant"):
        U.prepare(df, "t01", "converted".replace("converted", "flat"))
    with pytest.raises(ValueError, match="arm 'C' of treatment column 'arm' is empty.*A, B, holdout"):
        U.prepare(df, "arm", "converted", control_value="holdout", treated_value="C")
    one_arm = df.assign(t01=1)
    with pytest.raises(ValueError, match="single arm"):
        U.prepare(one_arm, "t01", "converted")
    # an arm whose rows all lack an outcome is empty too
    no_y = df.assign(converted=np.where(df["t01"] == 1, np.nan, df["converted"]))
    with pytest.raises(ValueError, match="arm '1' of treatment column 't01' is empty"):
        U.prepare(no_y, "t01", "converted")
    with pytest.raises(ValueError, match="cannot tell the control arm"):
        U.prepare(df[df["arm"] != "holdout"], "arm", "converted")
    with pytest.raises(ValueError, match="not numeric"):
        U.prepare(df, "t01", "country", features=["age"])


# ---------------------------------------------------------------------------- save / load / CLI


def test_save_load_roundtrip(trained, data, tmp_path):
    path = U.save_model(trained, tmp_path / "m.joblib")
    m = U.load_model(path)
    assert m.name == trained.selected and m.schema == trained.prepared.schema
    new = data.sample(300, random_state=1).drop(columns=["group", "deposited", "tau"])
    new.loc[new.index[:5], "segment"] = "bingo"  # unseen category -> missing, no error
    np.testing.assert_allclose(m.predict_uplift(new), trained.model.predict_uplift(new))
    with pytest.raises(ValueError, match="missing the model's feature column 'x2'"):
        m.predict_uplift(new.drop(columns="x2"))
    (tmp_path / "junk.joblib").write_text("not a model")
    with pytest.raises(ValueError, match="not .*uplift model"):
        U.load_model(tmp_path / "junk.joblib")


def test_cli_train_and_score(data, tmp_path, monkeypatch):
    monkeypatch.setenv("CRM_HOME", str(tmp_path))
    csv = tmp_path / "spring_bonus.csv"
    data.iloc[:4000].drop(columns=["tau", "ngr"]).to_csv(csv, index=False)
    runner = CliRunner()
    r = runner.invoke(uplift_group, ["train", "--data", str(csv), "--treatment", "group",
                                     "--outcome", "deposited", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    model_path = tmp_path / "models" / "uplift" / "spring_bonus.joblib"
    assert out["model_path"] == str(model_path) and model_path.is_file()
    assert set(out["metrics"]) == {"t", "x", "s", "ct"} and out["selected"] in out["metrics"]
    assert {"qini_auc", "auuc", "uplift_at_10", "uplift_at_20", "uplift_at_30"} <= set(out["metrics"]["t"])

    text = runner.invoke(uplift_group, ["train", "--data", str(csv), "--treatment", "group", "--outcome",
                                        "deposited", "--features", "x1,x2,segment", "--learners", "t",
                                        "--out", str(tmp_path / "t.joblib")])
    assert text.exit_code == 0, text.output
    assert "qini_auc" in text.output and "selected: t" in text.output

    new = tmp_path / "players.csv"
    data.iloc[4000:4500][["player_id", "x1", "x2", "x3", "segment"]].to_csv(new, index=False)
    scored = tmp_path / "scored.csv"
    r = runner.invoke(uplift_group, ["score", "--model", str(model_path), "--data", str(new),
                                     "--out", str(scored), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["rows"] == 500
    res = pd.read_csv(scored)
    assert list(res.columns) == ["player_id", "uplift"] and len(res) == 500
    np.testing.assert_allclose(res["uplift"], U.load_model(model_path).predict_uplift(pd.read_csv(new)), atol=1e-9)


def test_cli_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("CRM_HOME", str(tmp_path))
    csv = tmp_path / "c.csv"
    _small().to_csv(csv, index=False)
    runner = CliRunner()

    def fails(args, pattern):
        r = runner.invoke(uplift_group, args)
        assert r.exit_code != 0 and r.exception is not None
        assert pattern in r.output, r.output

    base = ["train", "--data", str(csv)]
    fails([*base, "--treatment", "arm", "--outcome", "converted"], "3 arms")
    fails([*base, "--treatment", "arm", "--outcome", "nope"], "outcome column 'nope' not in the data")
    fails([*base, "--treatment", "t01", "--outcome", "flat"], "is constant")
    fails([*base, "--treatment", "arm", "--outcome", "converted", "--control-value", "holdout",
           "--treated-value", "Z"], "arm 'Z' of treatment column 'arm' is empty")
    fails(["train", "--data", str(tmp_path / "missing.csv"), "--treatment", "t", "--outcome", "y"], "does not exist")
    fails(["score", "--model", str(tmp_path / "none.joblib"), "--data", str(csv), "--out", str(tmp_path / "o.csv")],
          "no uplift model")
    for cmd in ("train", "score"):
        r = runner.invoke(uplift_group, [cmd, "--help"])
        assert r.exit_code == 0 and "--json" in r.output


def test_a_learner_with_constant_predictions_is_never_selected(data):
    """An outcome driven by x1 alone, which the treatment does not move: with few, coarse trees
    the S-learner splits only on x1, never on the treatment flag, so its uplift is the same for
    every row (the random line's Qini, which can beat noisy learners). It must not be selected."""
    rng = np.random.default_rng(0)
    df = data.drop(columns=["tau", "ngr", "deposited"]).assign(
        y=10 * data["x1"] + rng.normal(scale=0.1, size=len(data)))
    params = {"n_estimators": 3, "num_leaves": 2, "min_child_samples": 200}
    res = U.train_uplift(df, "group", "y", seed=3, learners=("s", "t"), params=params)
    assert np.ptp(res.valid_scores["s"]) == 0 and np.ptp(res.valid_scores["t"]) > 0
    assert res.selected == "t" and "not selectable" in res.skipped["s"]
