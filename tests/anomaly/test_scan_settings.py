"""Bad scan settings stop with one ConfigError naming key and value; the scan's bookkeeping."""

import numpy as np
import pytest
from scipy import stats

from twinflow.anomaly import metrics
from twinflow.anomaly.gather import nsig_goals
from twinflow.anomaly.settings import check_config, check_nsig_scan, nsig_results, with_defaults
from twinflow.core.settings import ConfigError


def _section(**changes):
    section = with_defaults({})
    for path, value in changes.items():
        node = section
        *keys, last = path.split("/")
        for key in keys:
            node = node[key]
        node[last] = value
    return section


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("scan/centres", [3.1, 3.5, 3.5], "anomaly.scan.centres.*appears twice"),
        ("scan/centres", [3.1, 3.4], "anomaly.scan.centres.*overlap"),
        ("ranode/w-grid", [0.01, 1.0], "anomaly.ranode.w-grid"),
        ("ranode/w-grid", [0.0], "anomaly.ranode.w-grid"),
    ],
)
def test_bad_scan_settings(path, value, message):
    with pytest.raises(ConfigError, match=message):
        check_config(_section(**{path: value}))


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([0, -300], "anomaly.scan-nsig.n-signal = -300"),
        ([0, 300.5], "anomaly.scan-nsig.n-signal = 300.5"),
        ([300, 300], "duplicates"),
    ],
)
def test_bad_injection_counts(value, message):
    with pytest.raises(ConfigError, match=message):
        check_nsig_scan(_section(**{"scan-nsig/n-signal": value}))


def test_more_signal_than_available():
    section = _section(**{"scan-nsig/n-signal": [0, 3000]})
    check_nsig_scan(section, available_signal=None)
    with pytest.raises(ConfigError, match="n-signal = 3000.*at most 2000"):
        check_nsig_scan(section, available_signal=2000)


def test_one_job_per_point():
    section = _section(**{"scan-nsig/regions": [1]})
    paths = nsig_results("r", section)
    scan = section["scan-nsig"]
    assert (
        len(paths)
        == len(set(paths))
        == len(scan["n-signal"]) * len(scan["seeds"]) * len(scan["methods"])
    )
    assert "r/nsig/n750/seed3/sr1/ranode.h5" in paths


def test_excess_of_pure_background_is_a_unit_normal():
    """With data and test background from one density, Z over replicas is ~ N(0, 1)."""
    rng = np.random.default_rng(3)
    test_bkg = rng.normal(size=200_000)
    z = [
        metrics.selected_excess(test_bkg, rng.normal(size=20_000), 20_000, 0.01)[
            "excess_significance"
        ]
        for _ in range(300)
    ]
    assert abs(np.mean(z)) < 0.2 and 0.8 < np.std(z) < 1.2
    assert stats.normaltest(z).pvalue > 1e-3


def test_goals_from_a_table():
    rows = [
        {
            "n_signal": 1000,
            "seed": s,
            "region": "sr1",
            "method": "ranode",
            "true_w": 0.006,
            "learned_w": lw,
            "learned_w_error": 0.001,
            "max_sic": 1.0,
            "excess_significance": 0.0,
        }
        for s, lw in [(1, 0.0065), (2, 0.0069), (3, 0.0095)]
    ] + [
        {
            "n_signal": 0,
            "seed": s,
            "region": "sr1",
            "method": "cwola",
            "max_sic": 1.0,
            "excess_significance": z,
        }
        for s, z in [(1, 3.5), (2, 0.1), (3, 4.0)]
    ]
    goals = nsig_goals(rows, threshold=3)
    assert goals["ranode_w_within_30_percent"]["value"] == pytest.approx(2 / 3)
    assert not goals["ranode_w_within_30_percent"]["met"]
    assert goals["ranode_w_truth_inside_error"]["value"] == pytest.approx(2 / 3)
    assert goals["no_false_discoveries"]["seeds_above_threshold"] == {"sr1/cwola": [1, 3]}
    assert not goals["no_false_discoveries"]["met"]


def test_out_of_fold_scores_carry_no_memorised_fluctuations():
    """Two samples of one density: in-sample scores of class 1 sit above fresh events' scores,
    out-of-fold ones do not (what makes the N_sig = 0 excess honest)."""
    from twinflow.anomaly.classifiers import ClassifierEnsemble

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
    from twinflow.anomaly.classifiers import ClassifierEnsemble

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
