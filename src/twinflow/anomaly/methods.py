"""The anomaly detectors, behind one interface: ``fit(samples)`` then ``score(x, m)``.

``samples`` are the event samples of :func:`twinflow.anomaly.data.prepare_events`; each detector
looks only at what its method may see (the weakly supervised ones never read a label). A
higher score means more signal-like.

- ``supervised``: signal against background in the SR (the upper reference).
- ``iad``: the idealized anomaly detector: data against a perfect background sample in the SR.
- ``cwola``: data in the SR against data in the neighbouring sidebands (Metodiev et al. 2017).
- ``anode``: R(x) = p_data(x|m) / p_bkg(x|m), a flow trained on SR data over the sideband flow
  interpolated into the SR (Nachman & Shih 2020).
- ``cathode``: SR data against samples of the sideband flow at SR masses (Hallin et al. 2022).
- ``ranode``: p_data = w P_S(x, m) + (1 - w) P_B(x, m) in the SR, P_B the frozen sideband
  flow, P_S a small conditional flow and w learned from data (with its error); score P_S / P_B
  (Das, Kasieczka & Shih 2023). ``ranode-ideal``: the same with w held at the truth.
- ``sigma``: SR data against the template of the flow-matching model trained once on all data,
  with its vector field interpolated linearly from anchors either side of the SR;
  ``sigma-context``: interpolated in the conditioning (the mass embedding) instead;
  ``sigma-data``: the same model sampled at the SR masses, no interpolation (signal leaks in);
  ``sigma-cr``: a model trained on the sidebands of the SR only, sampled at the SR masses (the
  slow per-SR reference).

The background flow of ANODE, CATHODE and R-ANODE is the same sideband flow per SR; it is
trained by its own stage and passed in. Every method that trains on the SR data scores them out
of fold for the excess after a cut: the classifier methods through their ensemble's folds, ANODE
and R-ANODE by refitting their SR density on all folds but the one scored
(:class:`~twinflow.anomaly.detector.DensityDetector`).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping

import numpy as np
import torch

from twinflow.anomaly.classifiers import classifier_from_settings
from twinflow.anomaly.data import Events
from twinflow.anomaly.detector import DensityDetector, Detector, sample_masses
from twinflow.anomaly.flow_matching import FlowMatchingModel
from twinflow.anomaly.flows import ConditionalFlow, flow_from_settings
from twinflow.anomaly.ranode import RAnode, RAnodeIdeal
from twinflow.anomaly.regions import SignalRegion
from twinflow.anomaly.settings import METHODS, USES_SIDEBAND_FLOW, USES_SIGMA, USES_SIGMA_CR
from twinflow.core.seeding import derive_seed, numpy_rng
from twinflow.core.settings import ConfigError, require_choice


class ClassifierDetector(Detector):
    """A detector that trains a classifier of SR data (label 1) against a reference (label 0)."""

    def reference(self, samples: Mapping[str, Events]) -> np.ndarray:
        raise NotImplementedError

    def positives(self, samples: Mapping[str, Events]) -> np.ndarray:
        return self.region_data(samples).x

    def fit(self, samples: Mapping[str, Events]) -> ClassifierDetector:
        start = time.perf_counter()
        reference = self.reference(samples)
        positives = self.positives(samples)
        self.info["generate_seconds"] = self.info.get("generate_seconds", 0.0)
        self.classifier = classifier_from_settings(
            self.settings["classifier"], seed=self.seed, name=self.name
        )
        self.classifier.fit(reference, positives)
        self.info.update(
            n_reference=len(reference),
            n_positive=len(positives),
            classifier_seconds=self.classifier.fit_seconds,
            train_seconds=time.perf_counter() - start,
        )
        return self

    def score(self, x: np.ndarray, m: np.ndarray) -> np.ndarray:
        return self.classifier.predict(x)

    trains_on_region_data = True  # the positives are the SR data (all but the supervised one)

    def score_region_data(self, samples, test):
        """The SR data scored out of fold when the classifier trained on them: each fold by the
        members that held it out, and the test events by those members too, fold by fold."""
        if not self.trains_on_region_data:
            return super().score_region_data(samples, test)
        clf = self.classifier
        by_fold = np.stack([clf.predict_fold(test.x, k) for k in range(clf.n_folds)])
        return clf.out_of_fold, clf.positive_fold, by_fold


class Supervised(ClassifierDetector):
    name = "supervised"
    trains_on_region_data = False

    def positives(self, samples):
        sig = samples["signal_train"]
        return sig.x[self.region.inside(sig.m)]

    def reference(self, samples):
        bkg = samples["extra_background"]
        return bkg.x[self.region.inside(bkg.m) & (bkg.label == 0)]


class IAD(ClassifierDetector):
    name = "iad"

    def reference(self, samples):
        bkg = samples["extra_background"]
        return bkg.x[self.region.inside(bkg.m) & (bkg.label == 0)]


class CWoLa(ClassifierDetector):
    name = "cwola"

    def reference(self, samples):
        data = samples["data"]
        return data.x[self.region.neighbouring_sidebands(data.m)]


class Cathode(ClassifierDetector):
    name = "cathode"

    def __init__(self, settings, region, sideband_flow: ConditionalFlow):
        super().__init__(settings, region)
        self.flow = sideband_flow

    def reference(self, samples):
        start = time.perf_counter()
        m_sr = self.region_data(samples).m
        n = int(self.settings["cathode"]["oversampling"] * len(m_sr))
        masses = sample_masses(m_sr, n, self.region, numpy_rng(self.seed, "masses"))
        torch.manual_seed(self.seed)
        template = self.flow.sample(n, masses)
        self.info["generate_seconds"] = time.perf_counter() - start
        self.info["sideband_flow_seconds"] = self.flow.fit_seconds
        return template


class Sigma(ClassifierDetector):
    """SIGMA: SR data against a flow-matching template; ``mode`` says how it reaches the SR."""

    name = "sigma"
    mode = "field"  # field / context interpolation, or "direct": sampled at the SR masses

    def __init__(self, settings, region, model: FlowMatchingModel):
        super().__init__(settings, region)
        self.model = model

    def reference(self, samples):
        start = time.perf_counter()
        s = self.settings["sigma"]
        m_sr = self.region_data(samples).m
        n = int(s["oversampling"] * len(m_sr))
        masses = sample_masses(m_sr, n, self.region, numpy_rng(self.seed, "masses"))
        if self.mode == "direct":
            template = self.model.sample(n, masses, seed=self.seed)
        else:
            m_left, m_right = (
                self.region.low - s["anchor-margin"],
                self.region.high + s["anchor-margin"],
            )
            template = self.model.sample_interpolated(
                masses, m_left, m_right, seed=self.seed, interpolation=self.mode
            )
            self.info["anchors"] = [m_left, m_right]
        self.info.update(
            generate_seconds=time.perf_counter() - start,
            sigma_training_seconds=self.model.fit_seconds,
        )
        return template


class SigmaContext(Sigma):
    name = "sigma-context"
    mode = "context"


class SigmaData(Sigma):
    name = "sigma-data"
    mode = "direct"


class SigmaCR(Sigma):
    name = "sigma-cr"
    mode = "direct"


class Anode(DensityDetector):
    name = "anode"

    def _data_flow(self, sr: Events, tag: str) -> ConditionalFlow:
        flow = flow_from_settings(
            self.settings["flow"],
            seed=self.seed if tag == "main" else derive_seed(self.seed, tag) % 2**31,
            name="anode-sr" if tag == "main" else f"anode-sr-{tag}",
            device=self.device,
            features=sr.x.shape[1],
        )
        return flow.fit(sr.x, sr.m)

    def fit(self, samples):
        start = time.perf_counter()
        sr = self.region_data(samples)
        self.data_flow = self._data_flow(sr, "main")
        self.info.update(
            train_seconds=time.perf_counter() - start,
            sideband_flow_seconds=self.background.fit_seconds,
            n_region=len(sr),
        )
        return self

    def fit_fold(self, sr, train, tag):
        return functools.partial(self.log_ratio, self._data_flow(sr.select(train), tag))

    def score(self, x, m):
        """log R(x) = log p_data(x|m) - log p_bkg(x|m)."""
        return self.log_ratio(self.data_flow, x, m)


def build_detector(
    settings: Mapping,
    region: SignalRegion,
    *,
    sideband_flow: ConditionalFlow | None = None,
    sigma_model: FlowMatchingModel | None = None,
    sigma_cr_model: FlowMatchingModel | None = None,
) -> Detector:
    """Return the detector ``settings['method']`` for ``region`` (with the models it needs)."""
    method = settings["method"]
    require_choice("anomaly.methods", method, METHODS)
    if method in USES_SIDEBAND_FLOW and sideband_flow is None:
        raise ConfigError(
            f"method {method!r} needs the sideband flow of {region.name} (--sideband-flow)"
        )
    if method in USES_SIGMA and sigma_model is None:
        raise ConfigError(f"method {method!r} needs the trained SIGMA model (--sigma-model)")
    if method in USES_SIGMA_CR and sigma_cr_model is None:
        raise ConfigError(
            f"method {method!r} needs the SIGMA model of the sidebands of {region.name} "
            "(--sigma-cr-model)"
        )
    simple = {"supervised": Supervised, "iad": IAD, "cwola": CWoLa}
    if method in simple:
        return simple[method](settings, region)
    if method in USES_SIGMA:
        cls = {"sigma": Sigma, "sigma-context": SigmaContext, "sigma-data": SigmaData}[method]
        return cls(settings, region, sigma_model)
    if method in USES_SIGMA_CR:
        return SigmaCR(settings, region, sigma_cr_model)
    sideband_methods = {
        "anode": Anode,
        "cathode": Cathode,
        "ranode": RAnode,
        "ranode-ideal": RAnodeIdeal,
    }
    return sideband_methods[method](settings, region, sideband_flow)
