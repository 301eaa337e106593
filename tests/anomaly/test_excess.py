"""The excess after a cut in pure background: its significance must scatter as N(0, 1).

Data, reference and test background drawn from one density stand for an SR without signal.
Each check compares the spread of Z over many replicas with scipy's normal and chi-square
distributions, so a too-small error (or a biased scoring of the data) shows up as a failed
test, not as a "discovery" in a scan.
"""

import numpy as np
import pytest
from scipy import stats

from twinflow.anomaly import metrics
from twinflow.anomaly.classifiers import ClassifierEnsemble


def _consistent_with_unit_normal(z: np.ndarray) -> None:
    z = np.asarray(z)
    n = len(z)
    # mean within 3.5 standard errors of 0; sum of squares inside chi2(n)'s two-sided 1e-3
    # band (a width 1.4 times too large gives chi2 / n = 2: far outside); shape by KS
    assert abs(z.mean()) < 3.5 / np.sqrt(n), z.mean()
    chi2 = float(np.sum(z**2))
    assert stats.chi2(n).ppf(5e-4) < chi2 < stats.chi2(n).ppf(1 - 5e-4), chi2 / n
    assert stats.kstest(z, "norm").pvalue > 1e-3


def test_excess_of_pure_background_is_a_unit_normal():
    """Data outnumber the test background 5 to 1, as in a scan: Z ~ N(0, 1) only if the
    error holds the cut's own uncertainty (Poisson units alone give a width of 2.4)."""
    rng = np.random.default_rng(3)
    z, z_poisson = [], []
    for _ in range(300):
        test_bkg, data = rng.normal(size=4000), rng.normal(size=20_000)
        res = metrics.selected_excess(test_bkg, data, len(data), 0.05)
        z.append(res["excess_significance"])
        z_poisson.append((res["selected"] - res["expected"]) / np.sqrt(res["expected"]))
    _consistent_with_unit_normal(z)
    assert np.std(z_poisson) > 2  # the error without the cut's uncertainty: far too small


def test_classifier_excess_on_indistinguishable_classes_is_a_unit_normal():
    """The whole chain a weakly supervised method runs -- ensemble trained on data against a
    reference of the same density, the data scored out of fold, a cut per fold on that fold's
    share of the test background -- gives Z ~ N(0, 1) over seeds."""
    z = []
    for seed in range(30):
        rng = np.random.default_rng(100 + seed)
        x0, x1, test = (rng.normal(size=(n, 3)) for n in (6000, 6000, 1500))
        ens = ClassifierEnsemble(n_models=2, max_iter=20, seed=seed).fit(x0, x1)
        by_fold = np.stack([ens.predict_fold(test, k) for k in range(ens.n_folds)])
        labels = np.zeros(len(x1), dtype=np.int8)
        res = metrics.selected_excess_by_group(
            by_fold, ens.out_of_fold, ens.positive_fold, labels, 0.1
        )
        z.append(res["excess_significance"])
    _consistent_with_unit_normal(z)


@pytest.mark.parametrize("kind", ["hgb", "mlp"])
def test_members_never_see_the_fold_they_score(kind):
    """The fold a member scores takes no part in its training (nor in its early stopping):
    new events there leave the member as it was, while the member that trains on them changes."""
    rng = np.random.default_rng(5)
    x0, x1, probe = (rng.normal(size=(n, 3)) for n in (3000, 1500, 500))
    ens = ClassifierEnsemble(kind=kind, n_models=2, max_iter=20, seed=4).fit(x0, x1)
    scored = ens.positive_fold == 0  # member 0 holds out fold 0 and scores it
    x1_changed = x1.copy()
    x1_changed[scored] = rng.normal(size=(int(scored.sum()), 3))
    refit = ClassifierEnsemble(kind=kind, n_models=2, max_iter=20, seed=4).fit(x0, x1_changed)
    np.testing.assert_array_equal(
        refit.models[0].predict_proba(probe), ens.models[0].predict_proba(probe)
    )
    assert not np.array_equal(  # member 1 trains on fold 0: it must change
        refit.models[1].predict_proba(probe), ens.models[1].predict_proba(probe)
    )


def test_out_of_fold_scores_carry_no_memorised_fluctuations():
    """Two samples of one density: in-sample scores of class 1 sit above fresh events' scores,
    out-of-fold ones do not (what makes the N_sig = 0 excess honest)."""
    rng = np.random.default_rng(8)
    x0, x1, fresh = (rng.normal(size=(n, 3)) for n in (6000, 3000, 3000))
    ens = ClassifierEnsemble(n_models=4, max_iter=60, max_leaf_nodes=63, seed=2).fit(x0, x1)
    fresh_score = ens.predict(fresh)
    in_sample = ens.predict(x1)
    assert in_sample.mean() - fresh_score.mean() > 0.005  # the ensemble did memorise
    # out of fold: the same mean as fresh events (means are unchanged by averaging members),
    # within 4 standard errors of the difference
    error = np.sqrt(ens.out_of_fold.var() / len(x1) + fresh_score.var() / len(fresh))
    assert abs(ens.out_of_fold.mean() - fresh_score.mean()) < 4 * error
    assert in_sample.mean() - fresh_score.mean() > 4 * error


def test_no_excess_when_data_is_background():
    """Data and reference from one density: the fold-matched excess after a cut is a
    fluctuation (|Z| < 3.5), though in-sample scores would show one."""
    rng = np.random.default_rng(12)
    x0, x1, test = (rng.normal(size=(n, 3)) for n in (20_000, 10_000, 40_000))
    ens = ClassifierEnsemble(n_models=4, max_iter=60, max_leaf_nodes=63, seed=3).fit(x0, x1)
    by_fold = np.stack([ens.predict_fold(test, k) for k in range(ens.n_folds)])
    labels = np.zeros(len(x1), dtype=np.int8)
    fair = metrics.selected_excess_by_group(
        by_fold, ens.out_of_fold, ens.positive_fold, labels, 0.02
    )
    assert abs(fair["excess_significance"]) < 3.5
    in_sample = metrics.selected_excess(ens.predict(test), ens.predict(x1), len(x1), 0.02)
    assert in_sample["excess_significance"] > 3.5
