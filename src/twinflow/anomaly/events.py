"""The event samples of the anomaly scan: features x, the resonant feature m and labels, as
arrays in one container.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass
class Events:
    """A set of events: resonant feature ``m`` [N] (TeV), features ``x`` [N, 4], ``label`` [N]."""

    m: np.ndarray
    x: np.ndarray
    label: np.ndarray

    def __len__(self) -> int:
        return len(self.m)

    def select(self, mask: np.ndarray) -> Events:
        return Events(self.m[mask], self.x[mask], self.label[mask])

    @staticmethod
    def concatenate(parts: list[Events]) -> Events:
        return Events(
            np.concatenate([p.m for p in parts]),
            np.concatenate([p.x for p in parts]),
            np.concatenate([p.label for p in parts]),
        )

    def shuffled(self, rng: np.random.Generator) -> Events:
        return self.select(rng.permutation(len(self)))
