"""ROC and SIC against scikit-learn's roc_curve; the background-efficiency floor of max SIC."""

import numpy as np
import pytest
from sklearn import metrics as skm

from twinflow.anomaly import metrics


@pytest.fixture
def scored():
    rng = np.random.default_rng(4)
    label = np.r_[np.zeros(5000), np.ones(500)]
    score = np.r_[rng.normal(0, 1, 5000), rng.normal(1.5, 1, 500)]
    return label, np.round(score, 2)  # rounding makes ties, which both must handle alike


def test_roc_matches_sklearn(scored):
    label, score = scored
    fpr, tpr, thr = metrics.roc_curve(label, score)
    sk_fpr, sk_tpr, sk_thr = skm.roc_curve(label, score, drop_intermediate=False)
    np.testing.assert_allclose(fpr, sk_fpr)
    np.testing.assert_allclose(tpr, sk_tpr)
    np.testing.assert_allclose(thr[1:], sk_thr[1:])
    assert metrics.auc(label, score) == pytest.approx(skm.roc_auc_score(label, score), abs=1e-12)


def test_sic_and_floor_match_sklearn(scored):
    label, score = scored
    sk_fpr, sk_tpr, _ = skm.roc_curve(label, score, drop_intermediate=False)
    floor = 0.01
    keep = (sk_fpr > 0) & (sk_fpr >= floor)
    expected = np.max(sk_tpr[keep] / np.sqrt(sk_fpr[keep]))
    assert metrics.max_sic(label, score, floor) == pytest.approx(expected)
    # without the floor the maximum comes from the sparsest, noisiest end and is larger
    assert metrics.max_sic(label, score, 0.0) >= expected
    tpr, fpr, sic = metrics.sic_curve(label, score, floor)
    assert fpr.min() >= floor
    np.testing.assert_allclose(sic, tpr / np.sqrt(fpr))


def test_efficiency_at_and_significance(scored):
    label, score = scored
    eps_s, eps_b = metrics.efficiency_at(label, score, 0.05)
    sk_fpr, sk_tpr, _ = skm.roc_curve(label, score, drop_intermediate=False)
    i = np.flatnonzero(sk_fpr <= 0.05)[-1]
    assert (eps_s, eps_b) == (pytest.approx(sk_tpr[i]), pytest.approx(sk_fpr[i]))
    # Z = eps_s S / sqrt(eps_b B): 100 signal on 10000 background is 1 sigma before any cut
    assert metrics.expected_significance(100, 10000) == pytest.approx(1.0)
    assert metrics.expected_significance(100, 10000, 0.5, 0.01) == pytest.approx(5.0)
