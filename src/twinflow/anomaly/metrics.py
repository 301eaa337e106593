"""Figures of merit: ROC, SIC = TPR / sqrt(FPR), max SIC above a background-efficiency floor,
and the expected significance of a bump hunt after a cut on the anomaly score.

Curves are built from the scores of labelled test events; ties are handled as in
scikit-learn's ``roc_curve`` (one point per distinct threshold).
"""

from __future__ import annotations

import numpy as np


def roc_curve(label: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (fpr, tpr, thresholds), thresholds decreasing, one point per distinct score.

    The first point is (0, 0) at threshold +inf, as in scikit-learn (>= 1.3).
    """
    label = np.asarray(label).astype(bool)
    score = np.asarray(score, dtype=np.float64)
    order = np.argsort(-score, kind="mergesort")
    s, y = score[order], label[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # last index of each distinct score
    tps = np.cumsum(y)[last]
    fps = (last + 1) - tps
    n_pos, n_neg = max(int(label.sum()), 1), max(int((~label).sum()), 1)
    return (np.r_[0.0, fps / n_neg], np.r_[0.0, tps / n_pos], np.r_[np.inf, s[last]])


def sic_curve(label: np.ndarray, score: np.ndarray, min_background_efficiency: float = 0.0):
    """Return (tpr, fpr, sic) for fpr >= ``min_background_efficiency`` (and fpr > 0)."""
    fpr, tpr, _ = roc_curve(label, score)
    keep = (fpr > 0) & (fpr >= min_background_efficiency)
    return tpr[keep], fpr[keep], tpr[keep] / np.sqrt(fpr[keep])


def max_sic(label: np.ndarray, score: np.ndarray, min_background_efficiency: float) -> float:
    """Return max TPR/sqrt(FPR) over cuts keeping at least ``min_background_efficiency`` of background.

    The floor keeps spikes from a handful of surviving background events out of the figure.
    """
    _, _, sic = sic_curve(label, score, min_background_efficiency)
    return float(sic.max()) if len(sic) else float("nan")


def auc(label: np.ndarray, score: np.ndarray) -> float:
    fpr, tpr, _ = roc_curve(label, score)
    return float(np.trapezoid(tpr, fpr))


def efficiency_at(
    label: np.ndarray, score: np.ndarray, background_efficiency: float
) -> tuple[float, float]:
    """Return (signal efficiency, background efficiency) of the loosest cut with FPR <= the target."""
    fpr, tpr, _ = roc_curve(label, score)
    i = np.searchsorted(fpr, background_efficiency, side="right") - 1
    return float(tpr[i]), float(fpr[i])


def expected_significance(
    n_signal: float, n_background: float, eps_s: float = 1.0, eps_b: float = 1.0
) -> float:
    """Return Z = eps_s S / sqrt(eps_b B), the bump-hunt significance after a cut (S << B)."""
    if n_background <= 0 or eps_b <= 0:
        return float("nan")
    return float(eps_s * n_signal / np.sqrt(eps_b * n_background))


def selected_excess(
    test_background_score: np.ndarray,
    data_score: np.ndarray,
    n_data_background: int,
    background_efficiency: float,
) -> dict:
    """Return the data's excess over the background expectation after a cut on the score.

    The cut keeps the fraction ``background_efficiency`` of the labelled test background (its
    (1 - eps_B) quantile); the expectation is eps_B times the data's true background count n.
    Z = (N_selected - expected) / error is the significance of the excess, where the error
    holds both the binomial spread of the selected data, n eps (1 - eps), and that of the cut's
    efficiency measured on N_test test events, n^2 eps (1 - eps) / N_test: the cut is a sample
    quantile, so the true fraction of background it keeps scatters by sqrt(eps (1 - eps) /
    N_test) around eps. The second term dominates once the data outnumber the test background
    (5-fold in a reduced scan: the error is sqrt(6) times the Poisson one, and Z in Poisson
    units scatters with a width of 2.4 in pure background). With no injected signal, Z ~ N(0, 1)
    when data and test background are exchangeable (the classifier saw neither).
    """
    test_background_score = np.asarray(test_background_score)
    cut = float(np.quantile(test_background_score, 1 - background_efficiency))
    eps_b = float(np.mean(test_background_score > cut))
    expected = eps_b * n_data_background
    selected = int(np.sum(np.asarray(data_score) > cut))
    variance = (
        n_data_background
        * eps_b
        * (1 - eps_b)
        * (1 + n_data_background / max(len(test_background_score), 1))
    )
    return {
        "cut": cut,
        "selected": selected,
        "expected": expected,
        "variance": variance,
        "excess_significance": _significance(selected - expected, variance),
    }


def _significance(excess: float, variance: float) -> float:
    return float(excess / np.sqrt(variance)) if variance > 0 else float("nan")


def selected_excess_by_group(
    test_background_score: np.ndarray,
    data_score: np.ndarray,
    data_group: np.ndarray,
    data_label: np.ndarray,
    background_efficiency: float,
) -> dict:
    """:func:`selected_excess` summed over groups of data scored by different models.

    ``test_background_score`` [G, N]: the test background scored by group g's model; data event
    i belongs to group ``data_group[i]`` and its true background count per group comes from
    ``data_label`` (0 = background). Each group gets its own cut at the same eps_B, set on its
    own share of the test background (events g, g + G, g + 2G, ...): disjoint shares make the
    groups' cut errors independent, so their variances add. (Cuts set on one shared test sample
    would err together by an unknown amount, as correlated as the groups' models.)
    """
    test_background_score = np.atleast_2d(np.asarray(test_background_score))
    n_groups = len(test_background_score)
    selected, expected, variance = 0, 0.0, 0.0
    for g in range(n_groups):
        part = selected_excess(
            test_background_score[g, g::n_groups],
            data_score[data_group == g],
            int(np.sum((data_group == g) & (data_label == 0))),
            background_efficiency,
        )
        selected += part["selected"]
        expected += part["expected"]
        variance += part["variance"]
    return {
        "selected": selected,
        "expected": expected,
        "variance": variance,
        "excess_significance": _significance(selected - expected, variance),
    }
