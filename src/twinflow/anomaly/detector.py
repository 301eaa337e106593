"""The interface every anomaly-detection method answers (sk_cathode-like fit and score), and the
sampling of resonant masses the density-based methods share.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from scipy import stats

from twinflow.anomaly.data import Events
from twinflow.anomaly.regions import SignalRegion
from twinflow.core.seeding import derive_seed


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
