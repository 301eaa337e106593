"""R-ANODE (Das, Kasieczka, Shih, arXiv:2312.11629): a signal flow P_S(x, m) and the signal fraction w
fitted to the signal-region data with the sideband background density P_B(x, m) frozen; its
ideal-w variant; the w uncertainty from the curvature of the loss and, with an ensemble of
sideband flows as P_B, from the spread of w across the ensemble's members.
"""

from __future__ import annotations

import functools
import time

import numpy as np
import torch
from scipy import optimize, special

from twinflow.anomaly.data import Events
from twinflow.anomaly.detector import DensityDetector, sample_masses
from twinflow.anomaly.flows import ConditionalFlow, flow_from_settings, train_validation_split
from twinflow.core.checkpoint import EarlyStopping
from twinflow.core.progress import progress
from twinflow.core.seeding import derive_seed, numpy_rng


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


def profile_w(log_ps: np.ndarray, log_pb: np.ndarray) -> float:
    """Return the w in (0, 1) that maximises sum log[w p_S + (1 - w) p_B] with both densities
    fixed (the mixture log likelihood is concave in w, so the bounded search finds its maximum)."""

    def nll(w: float) -> float:
        return -float(np.sum(np.logaddexp(np.log(w) + log_ps, np.log1p(-w) + log_pb)))

    return float(optimize.minimize_scalar(nll, bounds=(1e-9, 1 - 1e-9), method="bounded").x)


def overlap(log_ps, log_pb, log_mix):
    """Return the Bhattacharyya coefficient BC = integral sqrt(P_S P_B) dx of the signal and
    background densities, estimated on events drawn from the data density, whose model is the
    mixture: BC ~ mean sqrt(P_S P_B) / (w P_S + (1 - w) P_B). Works on numpy arrays and tensors.

    0 for disjoint densities, 1 for equal ones. The mixture likelihood alone fixes only w times
    the share of P_S's mass that sits where the signal is: a P_S that keeps a background-shaped
    part (BC > 0 beyond the signal's own overlap) fits as well with a larger w, so the learned
    w comes out high (config/README.md, "R-ANODE's w against the exact background density").
    ``ranode.overlap-penalty`` adds lambda * w * BC to the loss: the signal component's
    background-shaped mass, which picks, among equally good fits, the one with the least of it.
    """
    terms = 0.5 * (log_ps + log_pb) - log_mix
    return terms.exp().mean() if torch.is_tensor(terms) else float(np.mean(np.exp(terms)))


class BackgroundEnsemble:
    """P_B as the mean density of K sideband flows, log P_B = logsumexp_k log p_k - log K.

    Averaging flows trained with different seeds smooths each one's own density errors; the
    members also tell how much a learned w depends on which P_B it was fitted against.
    """

    def __init__(self, flows: list[ConditionalFlow]):
        self.flows = list(flows)

    @property
    def fit_seconds(self) -> float:
        return float(sum(flow.fit_seconds for flow in self.flows))

    def member_log_probs(self, x: np.ndarray, m: np.ndarray) -> np.ndarray:
        """Return log p_k(x | m) of every member, [K, N]."""
        return np.stack([flow.log_prob(x, m) for flow in self.flows])

    def log_prob(self, x: np.ndarray, m: np.ndarray) -> np.ndarray:
        members = self.member_log_probs(x, m)
        return special.logsumexp(members, axis=0) - np.log(len(members))


class RAnode(DensityDetector):
    """R-ANODE (Das, Kasieczka & Shih 2023): fit w and P_S(x, m) to the SR data by minimising
    -log[w P_S(x, m) + (1 - w) P_B(x, m)] with P_B the frozen sideband flow.

    P_S is a conditional flow on the SR masses, so it can be sampled at any m in the SR. The
    learned w comes with its 1-sigma error from the curvature of the loss
    (:func:`fisher_w_uncertainty`). With ``ranode.background-flows`` K > 1, K - 1 more sideband
    flows (other seeds, the ``flow`` settings) join the given one, P_B is their mean density,
    and the error adds in quadrature the spread (standard deviation) of w refitted against each
    member at fixed P_S (:func:`profile_w`): the part of w's uncertainty that comes from P_B.
    ``ranode.overlap-penalty`` lambda > 0 refines the fit in a second stage with lambda * w *
    BC(P_S, P_B) added to the loss (:func:`overlap`): the mixture likelihood cannot tell a
    larger w with a broader, partly background-shaped P_S from the true w, and the penalty
    picks the fit with the least background-shaped signal mass; the change of w between the
    plain and the penalised fit joins the error (``learned_w_error_signal_model``).
    ``ranode.w-grid`` adds one P_S per fixed w (SIC against w); the ``ranode-ideal`` method
    holds w at the true S/(S+B) of the SR (a check, needs labels). The SR data are scored out of
    fold for the excess after a cut (:class:`~twinflow.anomaly.detector.DensityDetector`): P_S
    and w refitted on all folds but the one scored, against the same frozen P_B; the w of each
    fold's fit is reported (``w_per_fold``).
    """

    name = "ranode"
    ideal = False

    def __init__(self, settings, region, sideband_flow: ConditionalFlow):
        super().__init__(settings, region, sideband_flow)
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
        """Return (signal flow, w, history) minimising the mixture NLL; w learned unless fixed.

        With a learned w and ``overlap-penalty`` lambda > 0, the fit goes on from its best state
        with lambda * w * BC(P_S, P_B) added to the loss (:func:`overlap`), until the penalised
        validation loss stops improving. Two stages, because the penalty from the start can keep
        P_S from ever finding the signal: the first epochs' P_S is background-shaped (it starts
        from the standardised SR data), and the penalty pushes it away from all of the data, so
        w collapses to zero (seen on the default run's events).
        """
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

        def loss(idx, penalty=0.0):
            """The mixture NLL per event (+ the overlap penalty); also returns the NLL alone."""
            w = torch.sigmoid(theta)
            log_ps = flow.log_prob_tensor(z[idx], c[idx]) + log_det[idx]
            mix = torch.logaddexp(torch.log(w) + log_ps, torch.log1p(-w) + log_pb_t[idx])
            nll = -mix.mean()
            if not penalty:
                return nll, nll
            return nll + penalty * w * overlap(log_ps, log_pb_t[idx], mix), nll

        train_t = torch.as_tensor(train, device=flow.device)
        val_t = torch.as_tensor(val, device=flow.device)
        gen = torch.Generator().manual_seed(derive_seed(self.seed, tag, "order") % 2**31)
        batch = s["batch-size"]
        history = []
        # only a learned w has the flat direction the overlap penalty removes
        penalty = float(s.get("overlap-penalty", 0.0)) if w_fixed is None else 0.0
        for stage, lam in enumerate([0.0, penalty] if penalty else [0.0]):
            opt = torch.optim.Adam(params)
            stopper = EarlyStopping(s["patience"])
            best = None
            desc = f"train R-ANODE ({tag})" + (", overlap penalty" if stage else "")
            for epoch in progress(range(s["epochs"]), desc=desc, unit="epoch"):
                flow.net.train()
                order = train_t[torch.randperm(len(train_t), generator=gen).to(flow.device)]
                for i in range(0, len(order), batch):
                    opt.zero_grad()
                    loss(order[i : i + batch], lam)[0].backward()
                    opt.step()
                flow.net.eval()
                with torch.no_grad():
                    val_loss, val_nll = (float(v) for v in loss(val_t, lam))
                history.append(
                    {
                        "stage": stage,
                        "epoch": epoch,
                        "val_loss": val_loss,
                        "val_nll": val_nll,
                        "w": torch.sigmoid(theta).item(),
                        "selected": False,
                    }
                )
                stop = stopper.step(val_loss)
                if stopper.improved:
                    best = ({k: v.clone() for k, v in flow.net.state_dict().items()}, theta.item())
                    best_epoch = history[-1]
                if stop:
                    break
            if best is not None:  # each stage ends in its best epoch's state
                best_epoch["selected"] = True
                flow.net.load_state_dict(best[0])
                with torch.no_grad():
                    theta.fill_(best[1])
        flow.net.eval()
        return flow, float(1 / (1 + np.exp(-theta.item()))), history

    def _background_ensemble(self, samples) -> BackgroundEnsemble:
        """The given sideband flow and ``background-flows`` - 1 more, trained here."""
        flows = [self.background]
        data = samples["data"]
        sideband = data.select(self.region.sidebands(data.m))
        for k in range(1, int(self.settings["ranode"].get("background-flows", 1))):
            flow = flow_from_settings(
                self.settings["flow"],
                seed=derive_seed(self.seed, "background-flow", k) % 2**31,
                name=f"sideband flow {k} ({self.region.name})",
                device=self.device,
                features=sideband.x.shape[1],
            )
            flows.append(flow.fit(sideband.x, sideband.m))
        return BackgroundEnsemble(flows)

    def fit(self, samples):
        start = time.perf_counter()
        s = self.settings["ranode"]
        sr = self.region_data(samples)
        true_w = float(sr.label.mean())  # for the ideal-w variant and the report only
        self.background = self._background_ensemble(samples)
        members = self.background.member_log_probs(sr.x, sr.m)
        log_pb = special.logsumexp(members, axis=0) - np.log(len(members))
        # at N_sig = 0 the ideal w is 0, where P_S is undefined: hold it at a negligible 1e-6
        ideal_w = max(true_w, 1e-6)
        self._w_fixed = ideal_w if self.ideal else None
        flow, w, history = self._train(sr, log_pb, self._w_fixed, "main")
        self.history = history  # per epoch: stage (0 plain, 1 penalised), losses, w
        self.signal_flow = flow
        log_ps = flow.log_prob(sr.x, sr.m)
        log_mix = np.logaddexp(np.log(w) + log_ps, np.log1p(-w) + log_pb)
        sigma_statistical = fisher_w_uncertainty(log_ps, log_pb, w)
        w_members = [profile_w(log_ps, member) for member in members] if len(members) > 1 else []
        sigma_background = float(np.std(w_members, ddof=1)) if w_members else 0.0
        # with the overlap penalty: the plain fit and the penalised one describe the validation
        # data about equally well (their NLLs are reported) but differ in w; that difference is
        # the part of the flat direction the two span, and it joins w's error
        selected = {h["stage"]: h for h in history if h["selected"]}
        w_plain = selected[0]["w"] if 1 in selected else w
        sigma_signal_model = abs(w_plain - w)
        sigma_w = float(
            np.sqrt(sigma_statistical**2 + sigma_background**2 + sigma_signal_model**2)
        )
        self.grid_flows = []
        for k, w_grid in enumerate([] if self.ideal else s["w-grid"]):
            self.grid_flows.append(self._train(sr, log_pb, float(w_grid), f"grid{k}")[0])
        self.info.update(
            train_seconds=time.perf_counter() - start,
            sideband_flow_seconds=self.background.fit_seconds,
            learned_w=w,
            learned_w_error=sigma_w,
            signal_background_overlap=overlap(log_ps, log_pb, log_mix),
            overlap_penalty=float(s.get("overlap-penalty", 0.0)),
            learned_w_error_statistical=sigma_statistical,
            learned_w_error_background=sigma_background,
            learned_w_error_signal_model=sigma_signal_model,
            learned_w_plain=w_plain,
            validation_nll_plain=selected[0]["val_nll"],
            validation_nll=selected[max(selected)]["val_nll"],
            w_per_background_flow=w_members,
            background_flows=len(members),
            true_w=true_w,
            ideal_w=self.ideal,
            w_grid=[] if self.ideal else [float(v) for v in s["w-grid"]],
            n_region=len(sr),
            epochs_run=len(history),
            w_history=[h["w"] for h in history],
        )
        self._sr_masses = sr.m
        self._sr_log_pb = log_pb
        return self

    def fit_fold(self, sr, train, tag):
        flow, w, _ = self._train(sr.select(train), self._sr_log_pb[train], self._w_fixed, tag)
        self.info.setdefault("w_per_fold", []).append(w)
        return functools.partial(self.log_ratio, flow)

    def score(self, x, m):
        """log P_S(x|m) - log P_B(x|m)."""
        return self.log_ratio(self.signal_flow, x, m)

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
