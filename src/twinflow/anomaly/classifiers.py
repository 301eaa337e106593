"""Classifier ensembles for the classifier-based methods (CWoLa, CATHODE, SIGMA, IAD, supervised).

``ClassifierEnsemble(kind=...)`` trains ``n-models`` classifiers that differ in their seed and in
their random training/validation split (early stopping on the validation part) and averages
their probabilities: averaging tames the large run-to-run spread of weakly supervised training.

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
        self.fit_seconds = 0.0

    def _model(self, i: int):
        seed = derive_seed(self.seed, self.name, i) % 2**32
        if self.kind == "hgb":
            return HistGradientBoostingClassifier(
                max_iter=self.max_iter,
                learning_rate=self.learning_rate,
                max_leaf_nodes=self.max_leaf_nodes,
                early_stopping=True,
                validation_fraction=self.validation_fraction,
                n_iter_no_change=10,
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
                validation_fraction=self.validation_fraction,
                n_iter_no_change=10,
                batch_size=512,
                random_state=seed,
            ),
        )

    def fit(self, x0: np.ndarray, x1: np.ndarray) -> ClassifierEnsemble:
        """Train to tell ``x1`` (label 1) from ``x0`` (label 0)."""
        start = time.perf_counter()
        x = np.concatenate([x0, x1])
        y = np.concatenate([np.zeros(len(x0)), np.ones(len(x1))])
        self.models = []
        for i in progress(range(self.n_models), desc=f"train {self.name}", unit="model"):
            xi, yi = x, y
            if (
                self.kind == "mlp"
            ):  # MLPClassifier has no class weights: resample the smaller class
                rng = numpy_rng(self.seed, self.name, "balance", i)
                small, large = (0, 1) if len(x0) < len(x1) else (1, 0)
                extra = rng.choice(
                    np.flatnonzero(y == small), abs(len(x1) - len(x0)), replace=True
                )
                xi, yi = np.concatenate([x, x[extra]]), np.concatenate([y, y[extra]])
                assert (yi == large).sum() == (yi == small).sum()
            self.models.append(self._model(i).fit(xi, yi))
        self.fit_seconds = time.perf_counter() - start
        return self

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
