"""Per-event inference: sample the posterior model, reweight with the exact likelihood, write results.

For one event (an injection or real strain, :mod:`twinflow.gw.events`):

1. the event's analysis settings (detectors, per-detector band) become the token mask of
   :func:`twinflow.gw.tokens.event_batch`; settings outside what the model was trained on
   raise :class:`ConfigError` (duration, sampling rate, unknown detectors, a band outside the
   model's domain) or give a warning (a band or detector subset the training masks never drew);
2. ``n-samples`` draws ``theta_i ~ q(theta | d)`` with ``ln q``, in batches on the device;
   the right ascension is rotated from the model's reference time to the event's time by the
   GMST difference and ``geocent_time`` offsets become GPS times (as Dingo does);
3. importance weights ``w = L(d | theta) pi(theta) / q(theta | d)`` with the exact likelihood
   (:mod:`twinflow.gw.likelihood`, bilby's to 1e-6) and the prior density
   (:mod:`twinflow.gw.importance`): ESS, sampling efficiency, ln Z and its error;
4. if the prior leaves the phase free but the model does not infer it, the likelihood is
   marginalised over the phase (exact for the models the likelihood accepts) and the phase is
   reconstructed afterwards from its exact conditional posterior;
5. outputs: ``posterior.h5`` (samples, ln q, ln prior, ln L, weights), a bilby Result (JSON,
   read by ``bilby.core.result.read_in_result``) and ``summary.json`` (efficiency, ESS,
   ln Z +- error, runtimes of sampling, likelihood and the rest, warnings).

An event the model cannot describe (outside the trained prior or settings) still finishes,
with warnings and ``"reliable": false`` in its summary, never silently: the warnings name a
tiny effective sample size, posteriors piled against a prior bound, and untrained settings.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import h5py
import numpy as np

from twinflow.core.io import atomic_path, write_json, write_provenance
from twinflow.core.progress import progress
from twinflow.core.seeding import derive_seed, numpy_rng
from twinflow.core.settings import ConfigError, require, require_choice
from twinflow.gw.events import EventData
from twinflow.gw.importance import ImportanceResult, importance_sample, resample, weighted_quantile

PHASE_MARGINALIZATION = ("auto", "on", "off")
#: Below this effective sample size a posterior is flagged unreliable.
MINIMUM_RELIABLE_ESS = 50
#: A parameter whose weighted posterior puts more than this mass within 1 % (of the prior
#: range) of a prior bound is reported as railing against that bound.
RAILING_MASS = 0.5


# --------------------------------------------------------------------------------------------
# Settings


def check_settings(settings: Mapping) -> None:
    """Raise :class:`ConfigError` for invalid sampling settings (before any work)."""
    for key in ("n-samples", "batch-size"):
        value = settings[key]
        require(
            isinstance(value, int) and not isinstance(value, bool) and value >= 1,
            key,
            value,
            "an integer >= 1",
        )
    require(isinstance(settings["seed"], int), "seed", settings["seed"], "an integer")
    require_choice("device", settings["device"], ("auto", "cuda", "mps", "cpu"))
    require_choice(
        "phase-marginalization", settings["phase-marginalization"], PHASE_MARGINALIZATION
    )
    require(
        settings["tukey-roll-off"] >= 0,
        "tukey-roll-off",
        settings["tukey-roll-off"],
        "a time >= 0 s",
    )


def model_inputs(model) -> dict:
    """Return what the checkpoint says about the model's inputs (analysis settings, domain, masks).

    The training stage stores the batch assembler's description (``BatchAssembler.describe``)
    and the analysis settings in the model settings; this gathers them from wherever they sit.
    """
    s = model.settings
    out: dict = {}
    for section in (s, *(v for v in s.values() if isinstance(v, Mapping))):
        for key in (
            "domain",
            "detectors",
            "reference-time",
            "post-trigger-duration",
            "minimum-frequency",
            "maximum-frequency",
            "masks",
            "duration",
            "sampling-frequency",
            "prior",
            "approximant",
            "reference-frequency",
        ):
            if key in section and key not in out:
                out[key] = section[key]
    missing = [
        k
        for k in ("domain", "detectors", "reference-time", "post-trigger-duration")
        if k not in out
    ]
    if missing:
        raise ConfigError(
            f"the model checkpoint does not record {missing}: retrain it with this version"
        )
    domain = out["domain"]
    out.setdefault("duration", domain.get("duration"))
    out.setdefault("sampling-frequency", domain.get("sampling-frequency"))
    return out


def check_event_against_model(event: EventData, inputs: Mapping, domain) -> list[str]:
    """Raise ConfigError where the model cannot analyse the event; return warnings where it was not trained to.

    Errors: duration or sampling rate differ from the model's (its tokens would mean something
    else), a detector the model does not know, a band outside the model's domain. Warnings: a
    band edge or a detector subset the training masks never produced.
    """
    if not math.isclose(event.duration, float(inputs["duration"])):
        raise ConfigError(
            f"duration = {event.duration:g} s of event {event.name} does not match the model "
            f"checkpoint's duration = {inputs['duration']:g} s: analyse with the model's duration or "
            "train a model for this one"
        )
    if not math.isclose(event.sampling_frequency, float(inputs["sampling-frequency"])):
        raise ConfigError(
            f"sampling-frequency = {event.sampling_frequency:g} Hz of event {event.name} does not "
            f"match the model checkpoint's sampling-frequency = {inputs['sampling-frequency']:g} Hz"
        )
    known = list(inputs["detectors"])
    unknown = [d for d in event.detectors if d not in known]
    if unknown:
        raise ConfigError(
            f"detectors = {list(event.detectors)} of event {event.name}: the model was trained "
            f"for {known} only, not {unknown}"
        )
    warnings = []
    for d in event.detectors:
        lo, hi = event.minimum_frequency[d], event.maximum_frequency[d]
        if lo < domain.f_min - 1e-9 or hi > domain.f_max + 1e-9:
            raise ConfigError(
                f"the band {lo:g}-{hi:g} Hz of {d} (event {event.name}) reaches outside the model's "
                f"frequency domain [{domain.f_min:g}, {domain.f_max:g}] Hz"
            )
    masks = inputs.get("masks")
    f_min_train = float(inputs.get("minimum-frequency", domain.f_min))
    f_max_train = float(inputs.get("maximum-frequency", domain.f_max))
    token = domain.bins_per_token / event.duration  # narrowest token width [Hz]
    if masks is not None:
        lo_mask, hi_mask = masks["minimum-frequency"], masks["maximum-frequency"]
        lo_max = lo_mask["maximum"] if lo_mask["probability"] > 0 else f_min_train
        hi_min = hi_mask["minimum"] if hi_mask["probability"] > 0 else f_max_train
        for d in event.detectors:
            lo, hi = event.minimum_frequency[d], event.maximum_frequency[d]
            if lo > lo_max + token or lo < f_min_train - 1e-9:
                warnings.append(
                    f"{d}: minimum-frequency = {lo:g} Hz was never seen in training "
                    f"(trained on f_min in [{f_min_train:g}, {lo_max:g}] Hz)"
                )
            if hi < hi_min - token or hi > f_max_train + 1e-9:
                warnings.append(
                    f"{d}: maximum-frequency = {hi:g} Hz was never seen in training "
                    f"(trained on f_max in [{hi_min:g}, {f_max_train:g}] Hz)"
                )
        dropped = len(known) - len(event.detectors)
        p = list(masks["detector-drop-probabilities"]) + [0.0] * len(known)
        if p[dropped] <= 0:
            warnings.append(
                f"detectors = {list(event.detectors)}: the model was never trained with {dropped} of "
                f"its detectors {known} dropped"
            )
    return warnings


def event_tokens(event: EventData, inputs: Mapping, domain, device) -> dict:
    """Return the model's input batch for the event: tokens inside each detector's band."""
    import torch

    from twinflow.gw.tokens import compact, event_batch, frequency_keep

    psd = {
        d: event.psd[d] * event.window_factor for d in event.detectors
    }  # the windowed data's noise
    strain = {d: event.strain[d] for d in event.detectors}
    lo = min(event.minimum_frequency.values())
    hi = max(event.maximum_frequency.values())
    batch = event_batch(
        strain,
        psd,
        domain,
        list(inputs["detectors"]),
        float(inputs["post-trigger-duration"]),
        lo,
        hi,
        device=device,
    )
    # per-detector bands: drop the tokens of each detector outside its own band
    known = list(inputs["detectors"])
    index = batch["detector_index"]
    f_min = torch.tensor(
        [event.minimum_frequency.get(d, lo) for d in known],
        dtype=torch.float64,
        device=index.device,
    )
    f_max = torch.tensor(
        [event.maximum_frequency.get(d, hi) for d in known],
        dtype=torch.float64,
        device=index.device,
    )
    keep = (
        frequency_keep(batch["token_frequency"].double(), f_min[index], f_max[index])
        & ~batch["padding_mask"]
    )
    return compact(batch, keep)


# --------------------------------------------------------------------------------------------
# Sampling and reweighting


def gmst(gps_time: float) -> float:
    from bilby.gw.utils import greenwich_mean_sidereal_time

    return float(greenwich_mean_sidereal_time(float(gps_time)))


def draw_samples(
    model, batch: Mapping, n: int, batch_size: int, seed: int, device, stream: str = ""
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Return ``n`` samples (name -> [n] float64) and ln q [n] from the model, in batches.

    On the CPU the flow samples with one torch thread: its per-batch work is small, and on a
    loaded machine two spinning OpenMP threads made it 4-7x slower (measured); the cores go to
    the likelihood's worker processes instead.
    """
    import torch

    if torch.device(device).type == "cpu":
        torch.set_num_threads(1)
    torch.manual_seed(derive_seed(seed, "inference-sampling", stream))  # each event its own stream
    parts, log_q = [], []
    bar = progress(desc="sampling", total=n, unit="sample")
    for start in range(0, n, batch_size):
        size = min(batch_size, n - start)
        samples, lq = model.sample_and_log_prob(batch, size)
        parts.append({k: v.reshape(-1).double().cpu().numpy() for k, v in samples.items()})
        log_q.append(lq.reshape(-1).double().cpu().numpy())
        bar.update(size)
    bar.close()
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}, np.concatenate(log_q)


def prior_log_density(
    prior, samples: Mapping[str, np.ndarray], names: Sequence[str]
) -> np.ndarray:
    """Return sum over ``names`` of ln pi(sample) (independent 1-d priors; -inf outside support)."""
    n = len(next(iter(samples.values())))
    total = np.zeros(n)
    with np.errstate(divide="ignore"):
        for name in names:
            total += np.asarray(prior[name].ln_prob(samples[name]), dtype=float)
    total[np.isnan(total)] = -np.inf
    return total


def decide_phase_marginalization(prior, model_parameters: Sequence[str], choice: str) -> bool:
    """Return whether to marginalise the likelihood over the phase (see module docstring)."""
    from twinflow.gw.prior import is_fixed

    free = "phase" in prior and not is_fixed(prior["phase"])
    inferred = "phase" in model_parameters
    if choice == "off" or not free or inferred:
        if free and not inferred:
            raise ConfigError(
                "phase-marginalization = 'off' but the model does not infer the phase, which the "
                "prior leaves free: use 'auto' (marginalise and reconstruct it)"
            )
        return False
    p = prior["phase"]
    uniform = (
        type(p).__name__ == "Uniform"
        and math.isclose(p.minimum, 0)
        and math.isclose(p.maximum, 2 * math.pi)
    )
    require(
        uniform,
        "prior.phase",
        repr(p),
        "Uniform(0, 2 pi): phase marginalisation assumes a uniform phase prior",
    )
    return True


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
            "reliable": not self.warnings,
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
    from twinflow.gw.likelihood import GaussianLikelihood
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
        samples["ra"] = np.mod(
            samples["ra"] + gmst(event.trigger_time) - gmst(inputs["reference-time"]), 2 * np.pi
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
        if marginalize:
            rng = numpy_rng(settings["seed"], "phase", event.name)
            phase = np.zeros(len(log_q))
            phase[inside] = likelihood.reconstruct_phase(terms.d_inner_h, rng)
            samples["phase"] = phase
            names.append("phase")
    t_likelihood = time.perf_counter() - t0

    if result.effective_sample_size < MINIMUM_RELIABLE_ESS:
        warnings.append(
            f"effective sample size {result.effective_sample_size:.1f} of {result.n_samples} samples "
            f"(efficiency {result.sampling_efficiency:.2e}) is below {MINIMUM_RELIABLE_ESS}: the "
            "reweighted posterior rests on a handful of samples"
        )
    warnings += railing_warnings(prior, samples, result.weights, [n for n in names if n in prior])
    total = time.perf_counter() - t_start
    timings = {
        "sampling": t_sampling,
        "likelihood": t_likelihood,
        "other": total - t_sampling - t_likelihood,
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
    )


# --------------------------------------------------------------------------------------------
# Outputs


def write_posterior(posterior: EventPosterior, path: str | Path, settings: Mapping) -> None:
    """Write samples, ln q, ln prior, ln L ratio, weights and the optimal SNR to HDF5, atomically."""
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        group = f.create_group("samples")
        for name in posterior.parameters:
            group.create_dataset(name, data=posterior.samples[name])
        for name, values in (
            ("log_q", posterior.log_q),
            ("log_prior", posterior.log_prior),
            ("log_likelihood_ratio", posterior.log_likelihood_ratio),
            ("log_weights", posterior.importance.log_weights),
            ("weights", posterior.importance.weights),
            ("optimal_snr", posterior.optimal_snr),
        ):
            f.create_dataset(name, data=values)
        # the event's data for the report: ASD (of the windowed data), |d| scaled to an ASD, kept tokens
        event = posterior.event
        data = f.create_group("event")
        data.create_dataset("frequencies", data=event.frequencies)
        for d in event.detectors:
            g = data.create_group(d)
            g.create_dataset("asd", data=np.sqrt(event.psd[d] * event.window_factor))
            g.create_dataset(
                "strain_asd", data=np.abs(event.strain[d]) * np.sqrt(2 / event.duration)
            )
            g.create_dataset("token_edges", data=posterior.token_edges.get(d, np.zeros((0, 2))))
            g.attrs["band"] = [event.minimum_frequency[d], event.maximum_frequency[d]]
        if event.injection_parameters is not None:
            truth = f.create_group("injection")
            for k, v in event.injection_parameters.items():
                truth.attrs[k] = v
        write_provenance(
            f,
            settings,
            event=posterior.event.name,
            trigger_time=posterior.event.trigger_time,
            noise_log_likelihood=posterior.noise_log_likelihood,
            geocent_time="offset from trigger_time [s]",
            **posterior.importance.summary(),
        )


def write_bilby_result(posterior: EventPosterior, path: str | Path, prior, seed: int) -> None:
    """Write a bilby Result (JSON): the rejection-resampled posterior, all samples with weights."""
    import bilby
    import pandas as pd

    names = posterior.parameters
    event = posterior.event
    table = {n: posterior.samples[n] for n in names}
    if "geocent_time" in table:
        table["geocent_time"] = event.trigger_time + table["geocent_time"]  # bilby: GPS time
    frame = pd.DataFrame(table)
    frame["log_likelihood"] = posterior.log_likelihood_ratio + posterior.noise_log_likelihood
    frame["log_prior"] = posterior.log_prior
    keep = resample(posterior.importance.weights, numpy_rng(seed, "resample", event.name))
    weighted = frame.copy()
    weighted["weights"] = posterior.importance.weights
    injection = None
    if event.injection_parameters is not None:
        injection = dict(event.injection_parameters)
        injection["geocent_time"] = event.trigger_time + injection["geocent_time"]
    priors = bilby.core.prior.PriorDict({k: v for k, v in prior.items()})
    if (
        "geocent_time" in priors
    ):  # bilby's geocent_time is a GPS time, the config's an offset from the trigger
        g = priors["geocent_time"]
        if isinstance(g, bilby.core.prior.DeltaFunction):
            priors["geocent_time"] = bilby.core.prior.DeltaFunction(
                event.trigger_time + g.peak, name="geocent_time"
            )
        elif isinstance(g, bilby.core.prior.Uniform):
            priors["geocent_time"] = bilby.core.prior.Uniform(
                event.trigger_time + g.minimum, event.trigger_time + g.maximum, name="geocent_time"
            )
        else:
            priors["geocent_time_offset"] = priors.pop("geocent_time")
    result = bilby.core.result.Result(
        label=event.name,
        search_parameter_keys=names,
        priors=priors,
        posterior=frame.iloc[keep].reset_index(drop=True),
        nested_samples=weighted,
        log_evidence=posterior.importance.log_evidence + posterior.noise_log_likelihood,
        log_evidence_err=posterior.importance.log_evidence_error,
        log_noise_evidence=posterior.noise_log_likelihood,
        log_bayes_factor=posterior.importance.log_evidence,
        injection_parameters=injection,
        sampler="twinflow-importance-sampling",
        sampling_time=posterior.timings["total"],
        meta_data={
            "effective_sample_size": posterior.importance.effective_sample_size,
            "sampling_efficiency": posterior.importance.sampling_efficiency,
            "warnings": posterior.warnings,
            "detectors": list(event.detectors),
        },
    )
    with atomic_path(path) as tmp:
        result.save_to_file(filename=str(tmp), extension="json", overwrite=True)


def write_event_outputs(
    posterior: EventPosterior, out_dir: str | Path, prior, settings: Mapping
) -> dict:
    """Write posterior.h5, result.json and summary.json to ``out_dir``; return the summary."""
    out_dir = Path(out_dir)
    summary = posterior.summary()
    write_posterior(posterior, out_dir / "posterior.h5", settings)
    write_bilby_result(posterior, out_dir / "result.json", prior, settings["seed"])
    write_json(out_dir / "summary.json", {**summary, "settings": dict(settings)})
    return summary


# --------------------------------------------------------------------------------------------
# Stages: one event, the settings sweep, the collected summary


def load_event(
    settings: Mapping, psd_paths: Mapping[str, str] | None = None, log=print
) -> EventData:
    """Return the event a job analyses: an injection (``kind: injection``) or real strain."""
    from twinflow.gw.events import load_strain_event, make_injection, resolve_analysis
    from twinflow.gw.prior import build_prior, sample
    from twinflow.gw.psd import load_psd_bank

    name = settings["event"]
    if settings["kind"] == "strain":
        return load_strain_event(
            name,
            {
                "event": settings["strain"],
                "analysis": settings["analysis"],
                "post-trigger-duration": settings["post-trigger-duration"],
                "tukey-roll-off": settings["tukey-roll-off"],
                "psd": settings["psd"],
            },
            log=log,
        )
    require(settings["kind"] == "injection", "kind", settings["kind"], "'injection' or 'strain'")
    analysis = resolve_analysis({}, settings["analysis"], "gw")
    prior = build_prior(settings["prior"], "dataset.prior")
    injection = settings["injection"]
    rng = numpy_rng(injection["seed"], "injection", injection["index"])
    parameters = {k: float(v[0]) for k, v in sample(prior, 1, rng).items()}
    psds, chosen = {}, {}
    n_f = int(round(analysis["duration"] * analysis["sampling-frequency"])) // 2 + 1
    for d in analysis["detectors"]:
        require(
            psd_paths is not None and d in psd_paths,
            "psd banks",
            sorted(psd_paths or {}),
            f"a PSD bank for each of {analysis['detectors']}",
        )
        bank = load_psd_bank(psd_paths[d])
        if len(bank.frequencies) != n_f or not math.isclose(
            bank.delta_f, 1 / analysis["duration"]
        ):
            raise ConfigError(
                f"psd bank {psd_paths[d]!r} has {len(bank.frequencies)} bins at delta_f = "
                f"{bank.delta_f:g} Hz; the analysis needs {n_f} at {1 / analysis['duration']:g} Hz: "
                "remake the PSD banks with the analysis duration and sampling-frequency"
            )
        chosen[d] = int(rng.integers(len(bank.psd)))
        psds[d] = bank.psd[chosen[d]]
    event = make_injection(
        name,
        parameters,
        psds,
        analysis,
        settings,
        settings["reference-time"],
        settings["post-trigger-duration"],
        rng,
    )
    event.metadata["psd-index"] = chosen
    log(
        f"{name}: injection with network optimal SNR {event.metadata['network-optimal-snr']:.1f}: "
        + ", ".join(f"{k} = {v:.4g}" for k, v in parameters.items())
    )
    return event


def run_event(
    settings: Mapping,
    model_path: str | Path,
    out_dir: str | Path,
    *,
    psd_paths: Mapping[str, str] | None = None,
    processes: int | None = None,
    log=print,
) -> dict:
    """The inference stage for one event: check, load, sample, reweight, write outputs; return the summary."""
    from twinflow.core.device import select_device
    from twinflow.gw.model import load_posterior_model
    from twinflow.gw.prior import build_prior

    check_settings(settings)
    prior = build_prior(settings["prior"], "dataset.prior")
    event = load_event(settings, psd_paths, log=log)
    device = select_device(settings["device"])
    model = load_posterior_model(model_path, device=device)
    posterior = analyse_event(
        event, model, prior, settings, processes=processes, device=device, log=log
    )
    return write_event_outputs(posterior, out_dir, prior, settings)


def run_sweep(
    settings: Mapping,
    model_path: str | Path,
    out_dir: str | Path,
    *,
    psd_paths: Mapping[str, str] | None = None,
    processes: int | None = None,
    log=print,
) -> dict:
    """Analyse one event under several analysis settings with the same model (no retraining).

    ``settings["sweep"]`` lists entries ``{label, detectors?, minimum-frequency?,
    maximum-frequency?}``; each runs on the same data and writes ``out_dir/<label>/``. Returns
    (and writes ``out_dir/summary.json``) the summaries by label.
    """
    from twinflow.core.device import select_device
    from twinflow.gw.model import load_posterior_model
    from twinflow.gw.prior import build_prior

    check_settings(settings)
    entries = settings["sweep"]
    labels = [e["label"] for e in entries]
    require(len(set(labels)) == len(labels), "sweep.settings", labels, "distinct labels")
    prior = build_prior(settings["prior"], "dataset.prior")
    event = load_event(settings, psd_paths, log=log)
    variants = []
    for i, entry in enumerate(entries):  # every variant is checked before any sampling
        try:
            variants.append(
                event.with_analysis(
                    entry.get("detectors"),
                    entry.get("minimum-frequency"),
                    entry.get("maximum-frequency"),
                    name=f"{event.name}:{entry['label']}",
                )
            )
        except ConfigError as err:
            raise ConfigError(f"sweep.settings[{i}] ({entry['label']}): {err}") from err
    device = select_device(settings["device"])
    model = load_posterior_model(model_path, device=device)
    inputs = model_inputs(model)
    from twinflow.gw.domain import domain_from_settings

    domain = domain_from_settings(inputs["domain"])
    for variant in variants:
        check_event_against_model(variant, inputs, domain)  # errors before any work
    summaries = {}
    for variant in variants:
        posterior = analyse_event(
            variant, model, prior, settings, processes=processes, device=device, log=log
        )
        summaries[entry["label"]] = write_event_outputs(
            posterior, Path(out_dir) / entry["label"], prior, settings
        )
    write_json(
        Path(out_dir) / "summary.json",
        {"event": event.name, "settings": entries, "results": summaries},
    )
    return summaries


def collect_summaries(paths: Sequence[str | Path], out: str | Path) -> dict:
    """Collect per-event summaries into one file, with the injections' aggregate statistics.

    For the injections: median, mean and quartiles of the sampling efficiency; per parameter
    the KS p-value of the truth's posterior quantiles against U(0, 1) and Fisher's combined
    p-value (the P-P test).
    """
    import json

    import scipy.stats

    events = [json.loads(Path(p).read_text()) for p in paths]
    for e in events:
        e.pop("settings", None)
    injections = [e for e in events if "injection" in e]
    out_data: dict = {"events": {e["event"]: e for e in events}}
    if injections:
        eff = np.array([e["sampling_efficiency"] for e in injections])
        quantiles: dict[str, list[float]] = {}
        for e in injections:
            for name, q in e["truth_quantile"].items():
                quantiles.setdefault(name, []).append(q)
        pvalues = {
            name: float(scipy.stats.kstest(q, "uniform").pvalue) for name, q in quantiles.items()
        }
        combined = (
            float(scipy.stats.combine_pvalues(list(pvalues.values()), method="fisher").pvalue)
            if pvalues
            else None
        )
        out_data["injections"] = {
            "n": len(injections),
            "median_sampling_efficiency": float(np.median(eff)),
            "mean_sampling_efficiency": float(np.mean(eff)),
            "sampling_efficiency_quartiles": [float(x) for x in np.percentile(eff, [25, 75])],
            "fraction_with_efficiency_above_1%": float(np.mean(eff > 0.01)),
            "median_effective_sample_size": float(
                np.median([e["effective_sample_size"] for e in injections])
            ),
            "n_reliable": int(sum(e["reliable"] for e in injections)),
            "pp_ks_pvalues": pvalues,
            "pp_combined_pvalue": combined,
            "median_runtime": {
                k: float(np.median([e["runtime"][k] for e in injections]))
                for k in injections[0]["runtime"]
            },
        }
    write_json(out, out_data)
    return out_data
