"""One event's posterior: network samples, importance weights, and warnings that say when
not to trust it.

:func:`analyse_event` draws from the model, reweights with the exact likelihood and prior and
checks the result (effective sample size, posterior mass piled against prior bounds, settings
the model was not trained on).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Mapping, Sequence

import numpy as np

from twinflow.core.seeding import numpy_rng
from twinflow.core.settings import require
from twinflow.gw.detectors import rotate_right_ascension
from twinflow.gw.inference.events import EventData
from twinflow.gw.inference.importance import (
    ImportanceResult,
    importance_sample,
    weighted_quantile,
)
from twinflow.gw.inference.refined_posterior import refine_event
from twinflow.gw.inference.refinement import RefinementResult, refinement_settings
from twinflow.gw.inference.sampling import (
    check_event_against_model,
    decide_phase_marginalization,
    draw_samples,
    event_tokens,
    model_inputs,
    prior_log_density,
)

#: A parameter whose weighted posterior puts more than this mass within 1 % (of the prior
#: range) of a prior bound is reported as railing against that bound.
RAILING_MASS = 0.5


@dataclasses.dataclass
class NetworkStage:
    """The network-only importance sampling: its weights and (physical) samples."""

    importance: ImportanceResult
    samples: dict[str, np.ndarray]


@dataclasses.dataclass
class EventPosterior:
    """Everything one event's inference produced (see :func:`analyse_event`)."""

    event: EventData
    parameters: list[str]  # the model's parameters (plus phase, if reconstructed)
    samples: dict[
        str, np.ndarray
    ]  # name -> [n], physical; geocent_time as offset from the trigger
    log_q: np.ndarray
    log_prior: np.ndarray
    log_likelihood_ratio: np.ndarray
    noise_log_likelihood: float
    importance: ImportanceResult
    timings: dict[str, float]
    warnings: list[str]
    phase_marginalized: bool
    optimal_snr: np.ndarray  # [n], network optimal SNR of each sample
    token_edges: dict[str, np.ndarray] = dataclasses.field(
        default_factory=dict
    )  # detector -> [k, 2] Hz, kept tokens
    network: NetworkStage | None = None  # the network-only importance sampling
    refinement: RefinementResult | None = None  # None: the network's samples are the final ones
    target_ess: int = 1000

    def summary(self) -> dict:
        w = self.importance.weights
        stats = {}
        for name in self.parameters:
            values = self.samples[name]
            finite = w > 0
            if not finite.any():
                continue
            q05, q50, q95 = weighted_quantile(values[finite], [0.05, 0.5, 0.95], w[finite])
            stats[name] = {"median": float(q50), "5%": float(q05), "95%": float(q95)}
        out = {
            "event": self.event.name,
            "detectors": list(self.event.detectors),
            "minimum-frequency": self.event.minimum_frequency,
            "maximum-frequency": self.event.maximum_frequency,
            "trigger-time": self.event.trigger_time,
            **self.importance.summary(),
            "log_bayes_factor": self.importance.log_evidence,
            "log_noise_evidence": self.noise_log_likelihood,
            "log_evidence": self.importance.log_evidence + self.noise_log_likelihood,
            "phase_marginalized": self.phase_marginalized,
            "runtime": self.timings,
            "posterior": stats,
            "reliable": self.importance.effective_sample_size >= self.target_ess
            and (self.refinement is None or self.refinement.reached_target),
            "target_ess": self.target_ess,
            "final_stage": "network" if self.refinement is None else "refinement",
            **({"network": self.network.importance.summary()} if self.network is not None else {}),
            **({"refinement": self.refinement.summary()} if self.refinement is not None else {}),
            "warnings": self.warnings,
            **({"metadata": self.event.metadata} if self.event.metadata else {}),
        }
        if self.event.injection_parameters is not None:
            truth = self.event.injection_parameters
            out["injection"] = truth
            # weighted posterior CDF at the true value, per parameter (P-P plot input)
            out["truth_quantile"] = {
                name: float(np.sum(w[self.samples[name] < truth[name]]))
                for name in self.parameters
                if name in truth
            }
        return out


def checkpoint_warnings(model_settings: Mapping, prior, settings: Mapping) -> list[str]:
    """Return warnings where the analysis differs from what the model was trained with.

    Importance sampling stays exact as long as the model's proposal covers the analysis prior,
    but a different prior or waveform model than in training costs efficiency.
    """
    from twinflow.gw.prior import build_prior

    out = []
    trained = model_settings.get("prior")
    if trained is not None:
        trained_prior = build_prior(trained, "checkpoint prior")
        changed = sorted(
            k
            for k in set(trained_prior) | set(prior)
            if k not in trained_prior or k not in prior or repr(trained_prior[k]) != repr(prior[k])
        )
        if changed:
            out.append(f"the analysis prior differs from the model's training prior in {changed}")
    waveforms = model_settings.get("waveforms", {})
    for key in ("approximant", "reference-frequency"):
        if key in waveforms and waveforms[key] != settings[key]:
            out.append(
                f"{key} = {settings[key]!r} differs from the model's training {key} = {waveforms[key]!r}"
            )
    return out


def railing_warnings(
    prior, samples: Mapping[str, np.ndarray], weights: np.ndarray, names: Sequence[str]
) -> list[str]:
    """Return warnings for parameters whose posterior piles up against a prior bound."""
    out = []
    for name in names:
        p = prior[name]
        lo, hi = getattr(p, "minimum", -np.inf), getattr(p, "maximum", np.inf)
        if not (np.isfinite(lo) and np.isfinite(hi)) or name in (
            "ra",
            "phase",
            "psi",
        ):  # periodic ones do not rail
            continue
        edge = 0.01 * (hi - lo)
        for bound, near in (
            ("minimum", samples[name] < lo + edge),
            ("maximum", samples[name] > hi - edge),
        ):
            mass = float(np.sum(weights[near]))
            if mass > RAILING_MASS:
                value = lo if bound == "minimum" else hi
                out.append(
                    f"{name}: {mass:.0%} of the posterior lies within 1% of the prior {bound} {value:g}: "
                    "the event probably lies outside the trained prior"
                )
    return out


def analyse_event(
    event: EventData,
    model,
    prior,
    settings: Mapping,
    *,
    processes: int | None = None,
    device=None,
    log=print,
) -> EventPosterior:
    """Sample, reweight and summarise one event (settings: the ``gw.inference`` section)."""
    import torch

    from twinflow.gw.domain import domain_from_settings
    from twinflow.gw.inference.likelihood import GaussianLikelihood
    from twinflow.gw.prior import is_fixed, sample

    t_start = time.perf_counter()
    inputs = model_inputs(model)
    domain = domain_from_settings(inputs["domain"])
    warnings = check_event_against_model(event, inputs, domain)
    names = list(model.parameter_names)
    missing = [n for n in names if n not in prior]
    require(
        not missing,
        "prior",
        sorted(prior),
        f"a prior for every parameter the model infers ({missing} missing)",
    )
    marginalize = decide_phase_marginalization(prior, names, settings["phase-marginalization"])
    # Free parameters the model does not infer (it was trained marginalised over them) are drawn
    # from their prior: the proposal is q(theta | d) pi(phi), so w = L pi(theta) / q(theta | d).
    from_prior = [
        n
        for n in prior
        if not is_fixed(prior[n]) and n not in names and not (n == "phase" and marginalize)
    ]
    warnings += checkpoint_warnings(model.settings, prior, settings)
    for w in warnings:
        log(f"warning: {event.name}: {w}")

    device = device or torch.device("cpu")
    batch = event_tokens(event, inputs, domain, device)
    kept = ~batch["padding_mask"][0]
    edges = batch["token_frequency"][0][kept].double().cpu().numpy()
    index = batch["detector_index"][0][kept].cpu().numpy()
    token_edges = {d: edges[index == list(inputs["detectors"]).index(d)] for d in event.detectors}
    t0 = time.perf_counter()
    samples, log_q = draw_samples(
        model,
        batch,
        settings["n-samples"],
        settings["batch-size"],
        settings["seed"],
        device,
        stream=event.name,
    )
    t_sampling = time.perf_counter() - t0

    # the model's sky is at its reference time: rotate ra to the event's time (Dingo)
    if "ra" in samples:
        samples["ra"] = rotate_right_ascension(
            samples["ra"], float(inputs["reference-time"]), event.trigger_time
        )
    elif not math.isclose(event.trigger_time, float(inputs["reference-time"])) and "ra" in prior:
        warnings.append(
            "ra is fixed in the prior at the model's reference time; at this event's time the same "
            "detector-frame sky position has another ra"
        )
    log_prior = prior_log_density(prior, samples, names)
    if from_prior:
        draws = sample(
            {k: prior[k] for k in from_prior},
            len(log_q),
            numpy_rng(settings["seed"], "prior-draws", event.name),
        )
        samples.update(draws)
        names += from_prior
    params = {k: np.full(len(log_q), float(p.peak)) for k, p in prior.items() if is_fixed(p)}
    params.update(samples)
    params["geocent_time"] = event.trigger_time + params["geocent_time"]
    inside = np.isfinite(log_prior) & np.isfinite(log_q)

    t0 = time.perf_counter()
    log_l = np.full(len(log_q), -np.inf)
    snr = np.zeros(len(log_q))
    with GaussianLikelihood(
        event,
        settings["approximant"],
        settings["reference-frequency"],
        phase_marginalization=marginalize,
        processes=processes,
    ) as likelihood:
        terms = likelihood.evaluate(
            {k: v[inside] for k, v in params.items() if k != "phase" or not marginalize},
            show_progress=True,
        )
        log_l[inside] = terms.log_likelihood_ratio
        snr[inside] = np.sqrt(terms.optimal_snr_squared)
        noise_log_l = likelihood.noise_log_likelihood
        result = importance_sample(log_l, log_prior, log_q)
        network = NetworkStage(result, {k: v.copy() for k, v in samples.items()})
        t_likelihood = time.perf_counter() - t0
        d_inner_h = np.zeros(len(log_q), dtype=complex)
        d_inner_h[inside] = terms.d_inner_h
        refinement = None
        target = refinement_settings(settings.get("refinement"))["target-ess"]
        t0 = time.perf_counter()
        if result.effective_sample_size < target:
            log(
                f"{event.name}: network ESS {result.effective_sample_size:.1f} is below the target "
                f"{target}: refining with the exact likelihood"
            )
            from_prior_log_q = prior_log_density(prior, samples, from_prior) if from_prior else 0.0
            refinement, samples, d_inner_h, snr = refine_event(
                likelihood,
                prior,
                event.trigger_time,
                names,
                samples,
                np.where(inside, log_q + from_prior_log_q, -np.inf),
                log_l,
                d_inner_h,
                snr,
                settings.get("refinement"),
                numpy_rng(settings["seed"], "refinement", event.name),
                marginalize=marginalize,
                log=log,
            )
            log_l, log_prior = refinement.log_likelihood, refinement.log_prior
            log_q = refinement.log_proposal
            result = ImportanceResult(
                refinement.log_weights,
                refinement.weights,
                refinement.effective_sample_size,
                refinement.sampling_efficiency,
                refinement.log_evidence,
                refinement.log_evidence_error,
            )
            warnings += refinement.warnings
        t_refinement = time.perf_counter() - t0
        if marginalize:
            rng = numpy_rng(settings["seed"], "phase", event.name)
            finite = np.isfinite(log_l)
            phase = np.zeros(len(log_l))
            phase[finite] = likelihood.reconstruct_phase(d_inner_h[finite], rng)
            samples["phase"] = phase
            names.append("phase")

    if result.effective_sample_size < target and refinement is None:
        warnings.append(
            f"effective sample size {result.effective_sample_size:.1f} of {result.n_samples} samples "
            f"(efficiency {result.sampling_efficiency:.2e}) is below the target {target}"
        )
    warnings += railing_warnings(prior, samples, result.weights, [n for n in names if n in prior])
    total = time.perf_counter() - t_start
    timings = {
        "sampling": t_sampling,
        "likelihood": t_likelihood,
        "refinement": t_refinement,
        "other": total - t_sampling - t_likelihood - t_refinement,
        "total": total,
    }
    log(
        f"{event.name}: efficiency {result.sampling_efficiency:.3%}, ESS {result.effective_sample_size:.1f}, "
        f"ln BF {result.log_evidence:.2f} +- {result.log_evidence_error:.2f}; sampling {t_sampling:.1f} s, "
        f"likelihood {t_likelihood:.1f} s, total {total:.1f} s"
    )
    return EventPosterior(
        event=event,
        parameters=names,
        samples=samples,
        log_q=log_q,
        log_prior=log_prior,
        log_likelihood_ratio=log_l,
        noise_log_likelihood=noise_log_l,
        importance=result,
        timings=timings,
        warnings=warnings,
        phase_marginalized=marginalize,
        optimal_snr=snr,
        token_edges=token_edges,
        network=network,
        refinement=refinement,
        target_ess=target,
    )
