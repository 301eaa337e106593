"""Classifier ensembles for the classifier-based methods (CWoLa, CATHODE, SIGMA, IAD, supervised).

``ClassifierEnsemble(kind=...)`` trains ``n-models`` classifiers that differ in their seed and in
the fold they hold out, and averages their probabilities: averaging tames the large run-to-run
spread of weakly supervised training. The events are split at random into K = round(1 /
validation-fraction) folds (at least 2); member i trains on all folds but fold i mod K. Every
training event is thus held out by some members, and ``out_of_fold`` gives each event of class 1
the mean of those members only: the score of the data a weakly supervised method trained on,
free of what it memorised (k-folding, as CWoLa and CATHODE select their events). The held-out
fold takes no part in the member's training, not even in choosing when to stop, so its events
and fresh events from the same density are exchangeable: the excess after a cut on them is pure
noise when there is no signal (early stopping on the scored fold would pick the models that
happen to score it high).

HGB members grow ``max-iter`` trees without early stopping (as they effectively did before,
when a stop on the held-out fold never fired, so earlier results stand): stopping on a split of
the training folds instead ended IAD's members after 10-20 trees and lowered IAD's max SIC
(4.95 to 4.39 and 6.01 to 4.51 in a reduced run; config/README.md). MLP members stop early on a random ``EARLY_STOPPING_FRACTION``
of their training folds.

- ``hgb``: scikit-learn ``HistGradientBoostingClassifier``: cheap on a CPU and robust to
  uninformative features (Finke et al., arXiv:2309.13111);
- ``mlp``: scikit-learn ``MLPClassifier`` on standardised features.

Both classes are balanced (the smaller class is up-weighted or, for the MLP, resampled), since
the two sides of a weakly supervised problem rarely have equal sizes.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from twinflow.core.progress import progress
from twinflow.core.seeding import derive_seed, numpy_rng

CLASSIFIERS = ("hgb", "mlp")
EARLY_STOPPING_FRACTION = 0.2  # MLP: share of a member's training folds it stops on


class ClassifierEnsemble:
    """An ensemble of binary classifiers: ``fit(x0, x1)`` then ``predict(x)`` -> P(class 1 | x)."""

    def __init__(
        self,
        *,
        kind: str = "hgb",
        n_models: int = 5,
        max_iter: int = 200,
        learning_rate: float = 0.1,
        max_leaf_nodes: int = 31,
        validation_fraction: float = 0.5,
        hidden: tuple[int, ...] = (64, 64),
        seed: int = 0,
        name: str = "classifier",
    ):
        self.kind, self.n_models, self.max_iter = kind, n_models, max_iter
        self.learning_rate, self.max_leaf_nodes = learning_rate, max_leaf_nodes
        self.validation_fraction, self.hidden = validation_fraction, tuple(hidden)
        self.seed, self.name = seed, name
        self.models: list = []
        self.out_of_fold: np.ndarray | None = None
        self.positive_fold: np.ndarray | None = None
        self.fit_seconds = 0.0

    @property
    def n_folds(self) -> int:
        return max(2, int(round(1 / self.validation_fraction)))

    def _model(self, i: int):
        seed = derive_seed(self.seed, self.name, i) % 2**32
        if self.kind == "hgb":
            return HistGradientBoostingClassifier(
                max_iter=self.max_iter,
                learning_rate=self.learning_rate,
                max_leaf_nodes=self.max_leaf_nodes,
                early_stopping=False,
                class_weight="balanced",
                random_state=seed,
            )
        return make_pipeline(
            StandardScaler(),
            MLPClassifier(
                hidden_layer_sizes=self.hidden,
                learning_rate_init=1e-3,
                max_iter=self.max_iter,
                early_stopping=True,
                validation_fraction=EARLY_STOPPING_FRACTION,
                n_iter_no_change=10,
                batch_size=512,
                random_state=seed,
            ),
        )

    def fit(self, x0: np.ndarray, x1: np.ndarray) -> ClassifierEnsemble:
        """Train to tell ``x1`` (label 1) from ``x0`` (label 0); set ``out_of_fold`` for x1."""
        start = time.perf_counter()
        x_all = np.concatenate([x0, x1])
        y_all = np.concatenate([np.zeros(len(x0)), np.ones(len(x1))])
        fold = numpy_rng(self.seed, self.name, "folds").permutation(len(x_all)) % self.n_folds
        self.models = []
        oof_sum, oof_count = np.zeros(len(x1)), np.zeros(len(x1))
        for i in progress(range(self.n_models), desc=f"train {self.name}", unit="model"):
            held_out = fold == i % self.n_folds
            x, y = x_all[~held_out], y_all[~held_out]
            xi, yi = x, y
            if self.kind == "mlp":  # no class weights in MLPClassifier: resample the smaller
                # class of these training folds up to the larger one's count
                rng = numpy_rng(self.seed, self.name, "balance", i)
                counts = np.bincount(y.astype(int), minlength=2)
                small = int(np.argmin(counts))
                extra = rng.choice(
                    np.flatnonzero(y == small), int(counts.max() - counts.min()), replace=True
                )
                xi, yi = np.concatenate([x, x[extra]]), np.concatenate([y, y[extra]])
            # nothing of the held-out fold reaches the member. (It used to be HGB's X_val for
            # early stopping, scored without the class weights; on that loss no stop ever fired.)
            model = self._model(i).fit(xi, yi)
            self.models.append(model)
            held_positive = held_out[len(x0) :]
            oof_sum[held_positive] += model.predict_proba(x1[held_positive])[:, 1]
            oof_count[held_positive] += 1
        # events no member held out (fewer members than folds) get the ensemble's score
        missing = oof_count == 0
        if missing.any():
            oof_sum[missing], oof_count[missing] = self.predict(x1[missing]), 1
        self.out_of_fold = oof_sum / oof_count
        self.positive_fold = fold[len(x0) :]
        self.fit_seconds = time.perf_counter() - start
        return self

    def predict_fold(self, x: np.ndarray, k: int) -> np.ndarray:
        """Return the mean probability of the members that held out fold k (the score
        ``out_of_fold`` gives that fold's events), or of all members if none did."""
        members = [m for i, m in enumerate(self.models) if i % self.n_folds == k]
        return np.mean([m.predict_proba(x)[:, 1] for m in members or self.models], axis=0)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Return the ensemble-mean probability of class 1, [N]."""
        return np.mean([model.predict_proba(x)[:, 1] for model in self.models], axis=0)


def classifier_from_settings(settings: Mapping, *, seed: int, name: str) -> ClassifierEnsemble:
    """Build a :class:`ClassifierEnsemble` from an ``anomaly.classifier`` settings section."""
    return ClassifierEnsemble(
        kind=settings["kind"],
        n_models=settings["n-models"],
        max_iter=settings["max-iter"],
        learning_rate=settings["learning-rate"],
        max_leaf_nodes=settings["max-leaf-nodes"],
        validation_fraction=settings["validation-fraction"],
        hidden=tuple(settings["hidden"]),
        seed=seed,
        name=name,
    )
