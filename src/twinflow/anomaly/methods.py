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
- ``ranode``: p_data = w p_S + (1 - w) p_B in the SR, p_B the frozen sideband flow, p_S a
  small learned flow and w learned from data; score p_S / p_B (Das, Kasieczka & Shih 2023).
- ``sigma``: SR data against the template of the flow-matching model trained once on all data,
  with its field interpolated from either side of the SR.

The background flow of ANODE, CATHODE and R-ANODE is the same sideband flow per SR; it is
trained by its own stage and passed in.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import numpy as np
import torch
from scipy import stats

from twinflow.anomaly.classifiers import classifier_from_settings
from twinflow.anomaly.data import Events, SignalRegion
from twinflow.anomaly.flow_matching import FlowMatchingModel
from twinflow.anomaly.flows import ConditionalFlow, flow_from_settings, train_validation_split
from twinflow.core.checkpoint import EarlyStopping
from twinflow.core.progress import progress
from twinflow.core.seeding import derive_seed, numpy_rng
from twinflow.core.settings import ConfigError, require_choice

METHODS = ("supervised", "iad", "cwola", "anode", "cathode", "ranode", "sigma")
USES_SIDEBAND_FLOW = ("anode", "cathode", "ranode")
USES_SIGMA = ("sigma",)


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


class Supervised(ClassifierDetector):
    name = "supervised"

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
    name = "sigma"

    def __init__(self, settings, region, model: FlowMatchingModel):
        super().__init__(settings, region)
        self.model = model

    def reference(self, samples):
        start = time.perf_counter()
        s = self.settings["sigma"]
        m_sr = self.region_data(samples).m
        n = int(s["oversampling"] * len(m_sr))
        masses = sample_masses(m_sr, n, self.region, numpy_rng(self.seed, "masses"))
        m_left, m_right = (
            self.region.low - s["anchor-margin"],
            self.region.high + s["anchor-margin"],
        )
        template = self.model.sample_interpolated(masses, m_left, m_right, seed=self.seed)
        self.info.update(
            generate_seconds=time.perf_counter() - start,
            anchors=[m_left, m_right],
            sigma_training_seconds=self.model.fit_seconds,
        )
        return template


class Anode(Detector):
    name = "anode"

    def __init__(self, settings, region, sideband_flow: ConditionalFlow):
        super().__init__(settings, region)
        self.background = sideband_flow

    def fit(self, samples):
        start = time.perf_counter()
        sr = self.region_data(samples)
        self.data_flow = flow_from_settings(
            self.settings["flow"],
            seed=self.seed,
            name="anode-sr",
            device=self.device,
            features=sr.x.shape[1],
        )
        self.data_flow.fit(sr.x, sr.m)
        self.info.update(
            train_seconds=time.perf_counter() - start,
            sideband_flow_seconds=self.background.fit_seconds,
            n_region=len(sr),
        )
        return self

    def score(self, x, m):
        """log R(x) = log p_data(x|m) - log p_bkg(x|m)."""
        return self.data_flow.log_prob(x, m) - self.background.log_prob(x, m)


class RAnode(Detector):
    """R-ANODE: fit w and a signal flow to SR data with the background density held fixed."""

    name = "ranode"

    def __init__(self, settings, region, sideband_flow: ConditionalFlow):
        super().__init__(settings, region)
        self.background = sideband_flow

    def fit(self, samples):
        start = time.perf_counter()
        s = self.settings["ranode"]
        sr = self.region_data(samples)
        true_w = float(sr.label.mean())  # for the ideal-w variant and the report only
        rng = numpy_rng(self.seed, "ranode")
        train, val = train_validation_split(len(sr), s["validation-fraction"], rng)
        log_pb = torch.as_tensor(self.background.log_prob(sr.x, sr.m), dtype=torch.float32)
        self.signal_flow = ConditionalFlow(
            features=sr.x.shape[1],
            conditional=False,
            transforms=s["transforms"],
            hidden=s["hidden"],
            bins=s["bins"],
            seed=self.seed,
            device=self.device,
            name="ranode-signal",
        )
        flow = self.signal_flow
        flow.scaler.fit(sr.x)
        z, _, log_det = flow.preprocess(sr.x, None)
        log_pb = log_pb.to(flow.device)
        ideal = bool(s["ideal-w"])
        init = true_w if ideal else float(s["w-init"])
        theta = torch.tensor(
            float(np.log(init / (1 - init))), device=flow.device, requires_grad=not ideal
        )
        params = [{"params": flow.net.parameters(), "lr": s["learning-rate"]}]
        if not ideal:
            params.append({"params": [theta], "lr": s["w-learning-rate"]})
        opt = torch.optim.Adam(params)

        def nll(idx):
            w = torch.sigmoid(theta)
            log_ps = flow.log_prob_tensor(z[idx], None) + log_det[idx]
            mix = torch.logaddexp(torch.log(w) + log_ps, torch.log1p(-w) + log_pb[idx])
            return -mix.mean()

        train_t = torch.as_tensor(train, device=flow.device)
        val_t = torch.as_tensor(val, device=flow.device)
        gen = torch.Generator().manual_seed(self.seed)
        stopper = EarlyStopping(s["patience"])
        best = (None, theta.item())
        batch = s["batch-size"]
        history = []
        for epoch in progress(range(s["epochs"]), desc="train R-ANODE", unit="epoch"):
            flow.net.train()
            order = train_t[torch.randperm(len(train_t), generator=gen).to(flow.device)]
            for i in range(0, len(order), batch):
                loss = nll(order[i : i + batch])
                opt.zero_grad()
                loss.backward()
                opt.step()
            flow.net.eval()
            with torch.no_grad():
                val_loss = float(nll(val_t))
            history.append(
                {"epoch": epoch, "val_loss": val_loss, "w": torch.sigmoid(theta).item()}
            )
            stop = stopper.step(val_loss)
            if stopper.improved:
                best = ({k: v.clone() for k, v in flow.net.state_dict().items()}, theta.item())
            if stop:
                break
        if best[0] is not None:
            flow.net.load_state_dict(best[0])
        flow.net.eval()
        learned_w = float(1 / (1 + np.exp(-best[1])))
        self.info.update(
            train_seconds=time.perf_counter() - start,
            sideband_flow_seconds=self.background.fit_seconds,
            learned_w=learned_w,
            true_w=true_w,
            ideal_w=ideal,
            n_region=len(sr),
            epochs_run=len(history),
            w_history=[h["w"] for h in history],
        )
        return self

    def score(self, x, m):
        """log p_S(x) - log p_B(x|m)."""
        return self.signal_flow.log_prob(x, None) - self.background.log_prob(x, m)


def build_detector(
    settings: Mapping,
    region: SignalRegion,
    *,
    sideband_flow: ConditionalFlow | None = None,
    sigma_model: FlowMatchingModel | None = None,
) -> Detector:
    """Return the detector ``settings['method']`` for ``region`` (with the models it needs)."""
    method = settings["method"]
    require_choice("anomaly.methods", method, METHODS)
    if method in USES_SIDEBAND_FLOW and sideband_flow is None:
        raise ConfigError(
            f"method {method!r} needs the sideband flow of {region.name} (--sideband-flow)"
        )
    if method in USES_SIGMA and sigma_model is None:
        raise ConfigError("method 'sigma' needs the trained SIGMA model (--sigma-model)")
    simple = {"supervised": Supervised, "iad": IAD, "cwola": CWoLa}
    if method in simple:
        return simple[method](settings, region)
    if method == "sigma":
        return Sigma(settings, region, sigma_model)
    return {"anode": Anode, "cathode": Cathode, "ranode": RAnode}[method](
        settings, region, sideband_flow
    )
