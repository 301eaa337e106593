"""Per-event inference: sample the posterior model, reweight with the exact likelihood, write results.

For one event (an injection or real strain, :mod:`twinflow.gw.inference.events`):

1. the event's analysis settings (detectors, per-detector band) become the token mask of
   :func:`twinflow.gw.dataset.tokens.event_batch`; settings outside what the model was trained on
   raise :class:`ConfigError` (duration, sampling rate, unknown detectors, a band outside the
   model's domain) or give a warning (a band or detector subset the training masks never drew);
2. ``n-samples`` draws ``theta_i ~ q(theta | d)`` with ``ln q``, in batches on the device;
   the right ascension is rotated from the model's reference time to the event's time by the
   GMST difference and ``geocent_time`` offsets become GPS times (as Dingo does);
3. importance weights ``w = L(d | theta) pi(theta) / q(theta | d)`` with the exact likelihood
   (:mod:`twinflow.gw.inference.likelihood`, bilby's to 1e-6) and the prior density
   (:mod:`twinflow.gw.inference.importance`): ESS, sampling efficiency, ln Z and its error;
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

import math
from collections.abc import Mapping, Sequence

import numpy as np

from twinflow.core.progress import progress
from twinflow.core.seeding import derive_seed
from twinflow.core.settings import ConfigError, require
from twinflow.gw.inference.events import EventData

# --------------------------------------------------------------------------------------------
# Settings


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

    from twinflow.gw.dataset.batches import event_batch
    from twinflow.gw.dataset.tokens import compact, frequency_keep

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


# --------------------------------------------------------------------------------------------
# Outputs


# --------------------------------------------------------------------------------------------
# Stages: one event, the settings sweep, the collected summary
