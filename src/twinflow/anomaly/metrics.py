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
    (1 - eps_B) quantile); the expectation is eps_B times the data's true background count, and
    Z = (N_selected - expected) / sqrt(expected) is the Poisson significance of the excess in the
    large-count limit. With no injected signal, Z measures what a method "finds" in background.
    """
    cut = float(np.quantile(test_background_score, 1 - background_efficiency))
    eps_b = float(np.mean(test_background_score > cut))
    expected = eps_b * n_data_background
    selected = int(np.sum(data_score > cut))
    z = (selected - expected) / np.sqrt(expected) if expected > 0 else float("nan")
    return {"cut": cut, "selected": selected, "expected": expected, "excess_significance": z}


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
    ``data_label`` (0 = background). Each group gets its own cut at the same eps_B.
    """
    selected, expected = 0, 0.0
    for g in range(len(test_background_score)):
        part = selected_excess(
            test_background_score[g],
            data_score[data_group == g],
            int(np.sum((data_group == g) & (data_label == 0))),
            background_efficiency,
        )
        selected += part["selected"]
        expected += part["expected"]
    z = (selected - expected) / np.sqrt(expected) if expected > 0 else float("nan")
    return {"selected": selected, "expected": expected, "excess_significance": z}
