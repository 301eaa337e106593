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

METHODS = (
    "supervised",
    "iad",
    "cwola",
    "anode",
    "cathode",
    "ranode",
    "ranode-ideal",
    "sigma",
    "sigma-context",
    "sigma-data",
    "sigma-cr",
)
USES_SIDEBAND_FLOW = ("anode", "cathode", "ranode", "ranode-ideal")
USES_SIGMA = ("sigma", "sigma-context", "sigma-data")
USES_SIGMA_CR = ("sigma-cr",)


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


def fisher_w_uncertainty(log_ps: np.ndarray, log_pb: np.ndarray, w: float) -> float:
    """Return the 1-sigma error of w from the curvature of -sum log[w p_S + (1 - w) p_B].

    With both densities held fixed, d^2/dw^2 of the negative log likelihood is
    sum_i ((p_S - p_B) / (w p_S + (1 - w) p_B))^2 = sum_i ((r_i - 1) / (w r_i + 1 - w))^2 with
    r_i = p_S / p_B, and sigma_w = 1 / sqrt(that). It leaves out the freedom of p_S itself (fitted
    to the same events), so it is a lower bound on the spread a refit would show.
    """
    r = np.exp(np.clip(log_ps - log_pb, -50, 50))
    information = float(np.sum(((r - 1) / (w * r + 1 - w)) ** 2))
    return float(1 / np.sqrt(information)) if information > 0 else float("inf")


class RAnode(Detector):
    """R-ANODE (Das, Kasieczka & Shih 2023): fit w and P_S(x, m) to the SR data by minimising
    -log[w P_S(x, m) + (1 - w) P_B(x, m)] with P_B the frozen sideband flow.

    P_S is a conditional flow on the SR masses, so it can be sampled at any m in the SR. The
    learned w comes with its 1-sigma error from the curvature of the loss
    (:func:`fisher_w_uncertainty`). ``ranode.w-grid`` adds one P_S per fixed w (SIC against w);
    the ``ranode-ideal`` method holds w at the true S/(S+B) of the SR (a check, needs labels).
    """

    name = "ranode"
    ideal = False

    def __init__(self, settings, region, sideband_flow: ConditionalFlow):
        super().__init__(settings, region)
        self.background = sideband_flow
        self.grid_flows: list[ConditionalFlow] = []

    def _signal_flow(self, sr: Events, tag: str) -> ConditionalFlow:
        s = self.settings["ranode"]
        flow = ConditionalFlow(
            features=sr.x.shape[1],
            conditional=True,
            transforms=s["transforms"],
            hidden=s["hidden"],
            bins=s["bins"],
            seed=derive_seed(self.seed, tag) % 2**31,
            device=self.device,
            name=f"ranode-signal-{tag}",
        )
        flow.scaler.fit(sr.x)
        flow.mass.fit(sr.m)
        return flow

    def _train(self, sr: Events, log_pb: np.ndarray, w_fixed: float | None, tag: str):
        """Return (signal flow, w, history) minimising the mixture NLL; w learned unless fixed."""
        s = self.settings["ranode"]
        rng = numpy_rng(self.seed, "ranode-split")
        train, val = train_validation_split(len(sr), s["validation-fraction"], rng)
        flow = self._signal_flow(sr, tag)
        z, c, log_det = flow.preprocess(sr.x, sr.m)
        log_pb_t = torch.as_tensor(log_pb, dtype=torch.float32, device=flow.device)
        init = float(s["w-init"]) if w_fixed is None else float(w_fixed)
        theta = torch.tensor(
            float(np.log(init / (1 - init))), device=flow.device, requires_grad=w_fixed is None
        )
        params = [{"params": flow.net.parameters(), "lr": s["learning-rate"]}]
        if w_fixed is None:
            params.append({"params": [theta], "lr": s["w-learning-rate"]})
        opt = torch.optim.Adam(params)

        def nll(idx):
            w = torch.sigmoid(theta)
            log_ps = flow.log_prob_tensor(z[idx], c[idx]) + log_det[idx]
            mix = torch.logaddexp(torch.log(w) + log_ps, torch.log1p(-w) + log_pb_t[idx])
            return -mix.mean()

        train_t = torch.as_tensor(train, device=flow.device)
        val_t = torch.as_tensor(val, device=flow.device)
        gen = torch.Generator().manual_seed(derive_seed(self.seed, tag, "order") % 2**31)
        stopper = EarlyStopping(s["patience"])
        best = (None, theta.item())
        batch = s["batch-size"]
        history = []
        for epoch in progress(range(s["epochs"]), desc=f"train R-ANODE ({tag})", unit="epoch"):
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
        return flow, float(1 / (1 + np.exp(-best[1]))), history

    def fit(self, samples):
        start = time.perf_counter()
        s = self.settings["ranode"]
        sr = self.region_data(samples)
        true_w = float(sr.label.mean())  # for the ideal-w variant and the report only
        log_pb = self.background.log_prob(sr.x, sr.m)
        # at N_sig = 0 the ideal w is 0, where P_S is undefined: hold it at a negligible 1e-6
        ideal_w = max(true_w, 1e-6)
        flow, w, history = self._train(sr, log_pb, ideal_w if self.ideal else None, "main")
        self.signal_flow = flow
        log_ps = flow.log_prob(sr.x, sr.m)
        sigma_w = fisher_w_uncertainty(log_ps, log_pb, w)
        self.grid_flows = []
        for k, w_grid in enumerate([] if self.ideal else s["w-grid"]):
            self.grid_flows.append(self._train(sr, log_pb, float(w_grid), f"grid{k}")[0])
        self.info.update(
            train_seconds=time.perf_counter() - start,
            sideband_flow_seconds=self.background.fit_seconds,
            learned_w=w,
            learned_w_error=sigma_w,
            true_w=true_w,
            ideal_w=self.ideal,
            w_grid=[] if self.ideal else [float(v) for v in s["w-grid"]],
            n_region=len(sr),
            epochs_run=len(history),
            w_history=[h["w"] for h in history],
        )
        self._sr_masses = sr.m
        return self

    def score(self, x, m):
        """log P_S(x|m) - log P_B(x|m)."""
        return self.signal_flow.log_prob(x, m) - self.background.log_prob(x, m)

    def extra_outputs(self, test: Events) -> dict[str, np.ndarray]:
        """Scores of each fixed-w signal model, and samples of P_S(x, m) at SR masses."""
        out: dict[str, np.ndarray] = {}
        if self.grid_flows:
            log_pb = self.background.log_prob(test.x, test.m)
            out["score_w_grid"] = np.stack(
                [f.log_prob(test.x, test.m) - log_pb for f in self.grid_flows]
            )
        n = int(self.settings["ranode"]["signal-samples"])
        if n > 0:
            masses = sample_masses(self._sr_masses, n, self.region, numpy_rng(self.seed, "ps-m"))
            torch.manual_seed(self.seed)
            out["signal_samples"] = self.signal_flow.sample(n, masses)
            out["signal_sample_m"] = masses
            out["test_x"] = test.x
        return out


class RAnodeIdeal(RAnode):
    """R-ANODE with w held at the true signal fraction of the SR (the ideal-w check)."""

    name = "ranode-ideal"
    ideal = True


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
