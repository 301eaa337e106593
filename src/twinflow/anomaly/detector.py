"""The interface every anomaly-detection method answers (sk_cathode-like fit and score), the
sampling of resonant masses the density-based methods share, and the out-of-fold scoring of the
SR data for the methods that fit a density to those data.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
from scipy import stats

from twinflow.anomaly.data import Events
from twinflow.anomaly.regions import SignalRegion
from twinflow.core.seeding import derive_seed, numpy_rng

#: Folds of the SR data for the density methods' out-of-fold scores (:class:`DensityDetector`).
DENSITY_FOLDS = 2

Scorer = Callable[[np.ndarray, np.ndarray], np.ndarray]


def sample_masses(
    m_region: np.ndarray, n: int, region: SignalRegion, rng: np.random.Generator
) -> np.ndarray:
    """Draw n masses from a Gaussian KDE of the SR masses, kept inside the SR (rejection)."""
    kde = stats.gaussian_kde(m_region)
    out = np.empty(0)
    while len(out) < n:
        draw = kde.resample(2 * (n - len(out)) + 100, seed=rng)[0]
        out = np.concatenate([out, draw[region.inside(draw)]])
    return out[:n]


class Detector:
    """Base class: ``fit(samples)`` then ``score(x, m)``; ``info`` collects timings and extras."""

    name = "detector"

    def __init__(self, settings: Mapping, region: SignalRegion):
        self.settings = settings
        self.region = region
        self.seed = derive_seed(settings["seed"], "method", self.name, region.index) % 2**31
        self.device = settings.get("device", "auto")
        self.info: dict = {}

    def region_data(self, samples: Mapping[str, Events]) -> Events:
        data = samples["data"]
        return data.select(self.region.inside(data.m))

    def fit(self, samples: Mapping[str, Events]) -> Detector:
        raise NotImplementedError

    def score(self, x: np.ndarray, m: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def extra_outputs(self, test: Events) -> dict[str, np.ndarray]:
        """Return extra arrays for the method's output file (none by default)."""
        return {}

    def score_region_data(
        self, samples: Mapping[str, Events], test: Events
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return (SR data scores, their group, test scores per group [G, N_test]).

        The excess after a cut compares each group of data with a cut set on the test events
        scored the same way (one group here: the detector's score for all).
        """
        sr = self.region_data(samples)
        return (
            self.score(sr.x, sr.m),
            np.zeros(len(sr), dtype=np.int64),
            self.score(test.x, test.m)[None],
        )


class DensityDetector(Detector):
    """A method that fits a density to the SR data themselves (ANODE's p_data, R-ANODE's P_S and
    w) and scores with it.

    Scored with the model fitted to them, the SR data sit above fresh events of the same density
    (the model learned their fluctuations), so a cut set on the test background selects more of
    them than background alone would give: an excess with no signal. On the default run's events
    this made ANODE and R-ANODE report +6.1 and +5.5 sigma in the 2.9-3.3 TeV SR, which holds
    almost no signal (config/README.md). So, as the classifier methods do, the SR data are
    scored out of fold: they are split at random into :data:`DENSITY_FOLDS` folds, the method's
    model is refitted on all folds but k (:meth:`fit_fold`), and that model scores fold k and
    the test events (the cut for fold k is set on those). The model :meth:`fit` trained on all
    SR data still gives the test scores (SIC) and everything else the method reports.

    Both methods score with the log ratio of their SR density to the background density P_B
    learned on the sidebands (``sideband_flow``, frozen): :meth:`log_ratio`.
    """

    def __init__(self, settings: Mapping, region: SignalRegion, sideband_flow):
        super().__init__(settings, region)
        self.background = sideband_flow

    def log_ratio(self, flow, x: np.ndarray, m: np.ndarray) -> np.ndarray:
        """Return log p(x | m) - log P_B(x | m) for an SR density ``flow``."""
        return flow.log_prob(x, m) - self.background.log_prob(x, m)

    def fit_fold(self, sr: Events, train: np.ndarray, tag: str) -> Scorer:
        """Fit the method's SR model to the SR data where ``train`` holds; return its score."""
        raise NotImplementedError

    def score_region_data(self, samples, test):
        """The SR data scored out of fold, and the test events by each fold's model [K, N_test]."""
        sr = self.region_data(samples)
        fold = numpy_rng(self.seed, self.name, "data-folds").permutation(len(sr)) % DENSITY_FOLDS
        data_score = np.empty(len(sr))
        test_by_fold = np.empty((DENSITY_FOLDS, len(test)))
        for k in range(DENSITY_FOLDS):
            held_out = fold == k
            score = self.fit_fold(sr, ~held_out, f"fold{k}")
            data_score[held_out] = score(sr.x[held_out], sr.m[held_out])
            test_by_fold[k] = score(test.x, test.m)
        return data_score, fold.astype(np.int64), test_by_fold
