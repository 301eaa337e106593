"""Torch-free checks of the gw settings: every stage's checks in one place, and the whole gw
section checked at once (:func:`check_config`) when the Snakefile is parsed, so a bad value
stops the workflow before any job runs. Each stage runs its own check again when it starts
(by hand, too). Errors are :class:`~twinflow.core.settings.ConfigError`: one line naming the
key, its value and what would be valid.

This module is longer than 400 lines on purpose: it is the one place a reader looks for what
a gw setting may be, and the Snakefile imports it alone (it imports no torch, bilby or scipy).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from twinflow.core.settings import (
    ConfigError,
    require,
    require_choice,
    require_file,
    require_nyquist,
    require_positive,
    require_safe_name,
)
from twinflow.gw.detectors import KNOWN_DETECTORS
from twinflow.gw.domain import MultibandedFrequencyDomain, UniformFrequencyDomain
from twinflow.gw.prior import EXTRINSIC
from twinflow.gw.published import published_intervals

SCHEDULERS = ("cosine", "plateau")
PHASE_MARGINALIZATION = ("auto", "on", "off")


def check_mask_settings(
    masks: Mapping, n_detectors: int, f_min: float, f_max: float, key: str = "dataset.masks"
) -> None:
    """Raise :class:`ConfigError` for mask settings that cannot apply to the analysis band."""
    p = masks["detector-drop-probabilities"]
    require(
        isinstance(p, list)
        and len(p) >= 1
        and all(isinstance(x, (int, float)) and x >= 0 for x in p)
        and sum(p[:n_detectors]) > 0,
        f"{key}.detector-drop-probabilities",
        p,
        f"probabilities of dropping 0, 1, ... detectors, not all zero for the first {n_detectors}",
    )
    lo, hi = masks["minimum-frequency"], masks["maximum-frequency"]
    for name, section in (
        ("minimum-frequency", lo),
        ("maximum-frequency", hi),
        ("notches", masks["notches"]),
    ):
        prob = section["probability"]
        require(
            isinstance(prob, (int, float)) and 0 <= prob <= 1,
            f"{key}.{name}.probability",
            prob,
            "in [0, 1]",
        )
    if lo["probability"] > 0:
        require(
            f_min < lo["maximum"] < f_max,
            f"{key}.minimum-frequency.maximum",
            lo["maximum"],
            f"a frequency inside the analysis band ({f_min:g}, {f_max:g}) Hz",
        )
    if hi["probability"] > 0:
        require(
            f_min < hi["minimum"] < f_max,
            f"{key}.maximum-frequency.minimum",
            hi["minimum"],
            f"a frequency inside the analysis band ({f_min:g}, {f_max:g}) Hz",
        )
    if lo["probability"] > 0 and hi["probability"] > 0:
        require(
            lo["maximum"] < hi["minimum"],
            f"{key}.minimum-frequency.maximum",
            lo["maximum"],
            f"below {key}.maximum-frequency.minimum = {hi['minimum']} so a band always remains",
        )
    notches = masks["notches"]
    require(
        isinstance(notches["max-count"], int) and notches["max-count"] >= 1,
        f"{key}.notches.max-count",
        notches["max-count"],
        "an integer >= 1",
    )
    require(
        isinstance(notches["max-width"], (int, float)) and notches["max-width"] > 0,
        f"{key}.notches.max-width",
        notches["max-width"],
        "a width > 0 Hz",
    )


def check_batch_settings(settings: Mapping) -> None:
    """Raise :class:`ConfigError` for invalid batch settings (detectors, extrinsic prior, masks)."""

    require(
        isinstance(settings["detectors"], list) and len(settings["detectors"]) >= 1,
        "detectors",
        settings["detectors"],
        f"a non-empty list of {list(KNOWN_DETECTORS)}",
    )
    for det in settings["detectors"]:
        require_choice("detectors", det, KNOWN_DETECTORS)
    extrinsic = settings["prior"]
    missing = [k for k in EXTRINSIC if k not in extrinsic]
    require(
        not missing,
        "dataset.prior",
        sorted(extrinsic),
        f"a prior (or fixed value) for each of {missing}",
    )
    require(
        isinstance(settings["post-trigger-duration"], (int, float))
        and 0 <= settings["post-trigger-duration"] < settings["duration"],
        "dataset.post-trigger-duration",
        settings["post-trigger-duration"],
        f"in [0, duration = {settings['duration']}) s",
    )
    check_mask_settings(
        settings["masks"],
        len(settings["detectors"]),
        settings["minimum-frequency"],
        settings["maximum-frequency"],
    )


def check_architecture(arch: Mapping) -> None:
    """Raise :class:`ConfigError` naming the key for invalid model sizes."""
    tok, tr, flow = arch["tokenizer"], arch["transformer"], arch["flow"]
    for key, value in (
        ("model.tokenizer.hidden", tok["hidden"]),
        ("model.tokenizer.blocks", tok["blocks"]),
        ("model.transformer.d-model", tr["d-model"]),
        ("model.transformer.layers", tr["layers"]),
        ("model.transformer.heads", tr["heads"]),
        ("model.transformer.feed-forward", tr["feed-forward"]),
        ("model.flow.transforms", flow["transforms"]),
        ("model.flow.bins", flow["bins"]),
    ):
        require(
            isinstance(value, int)
            and not isinstance(value, bool)
            and value >= (0 if key.endswith("blocks") else 1),
            key,
            value,
            "a positive integer",
        )
    require(
        tr["d-model"] % tr["heads"] == 0,
        "model.transformer.heads",
        tr["heads"],
        f"a divisor of d-model = {tr['d-model']}",
    )
    require(
        0 <= tr["dropout"] < 1, "model.transformer.dropout", tr["dropout"], "a number in [0, 1)"
    )
    hidden = flow["hidden"]
    require(
        isinstance(hidden, (list, tuple))
        and len(hidden) >= 1
        and all(isinstance(h, int) and h >= 1 for h in hidden),
        "model.flow.hidden",
        hidden,
        "a non-empty list of positive integers (hidden layer sizes)",
    )
    embedding = arch.get("embedding", "transformer")
    require_choice("model.embedding", embedding, ("transformer", "svd-mlp"))
    if embedding == "svd-mlp":
        svd = arch["svd-mlp"]
        for key in ("basis-size", "hidden", "blocks", "context", "training-waveforms"):
            _require_int(f"model.svd-mlp.{key}", svd[key], 0 if key == "blocks" else 1)
        require(
            0 <= svd["dropout"] < 1, "model.svd-mlp.dropout", svd["dropout"], "a number in [0, 1)"
        )


def _require_int(key: str, value: Any, minimum: int) -> None:
    require(
        isinstance(value, int) and not isinstance(value, bool) and value >= minimum,
        key,
        value,
        f"an integer >= {minimum}",
    )


def check_train_settings(settings: Mapping) -> None:
    """Raise :class:`ConfigError` naming the first invalid ``gw.train`` setting."""
    _require_int("seed", settings["seed"], 0)
    require_choice("device", settings["device"], ("auto", "cuda", "mps", "cpu"))
    _require_int("batch-size", settings["batch-size"], 2)
    _require_int("epochs", settings["epochs"], 1)
    _require_int("steps-per-epoch", settings["steps-per-epoch"], 1)
    _require_int("validation-size", settings["validation-size"], 1)
    require_positive("learning-rate", settings["learning-rate"])
    require_positive("weight-decay", settings["weight-decay"], allow_zero=True)
    require_positive("gradient-clip", settings["gradient-clip"])
    require_choice("scheduler", settings["scheduler"], SCHEDULERS)
    require(
        0 < settings["plateau-factor"] < 1,
        "plateau-factor",
        settings["plateau-factor"],
        "a number in (0, 1)",
    )
    _require_int("plateau-patience", settings["plateau-patience"], 0)
    _require_int("early-stopping-patience", settings["early-stopping-patience"], 1)
    require(isinstance(settings["amp"], bool), "amp", settings["amp"], "true or false")
    budget = settings.get("time-budget")
    require(
        budget is None
        or (isinstance(budget, (int, float)) and not isinstance(budget, bool) and budget > 0),
        "time-budget",
        budget,
        "null (no limit) or a number of seconds > 0",
    )
    frac = settings.get("validation-fraction", 0.05)
    require(
        isinstance(frac, (int, float)) and 0 < frac < 1,
        "validation-fraction",
        frac,
        "a fraction in (0, 1)",
    )
    names = settings.get("parameters")
    require(
        names is None
        or (
            isinstance(names, list) and len(names) >= 1 and all(isinstance(n, str) for n in names)
        ),
        "parameters",
        names,
        "null (every non-fixed prior parameter) or a non-empty list of names",
    )
    check_architecture(settings["model"])


REFINEMENT_METHODS = ("amis", "smc")

#: Settings of the refinement (:func:`twinflow.gw.inference.refinement.refine`) (kebab-case, as in ``gw.inference.refinement``) and their defaults.
REFINEMENT_DEFAULTS: dict = {
    "method": "amis",
    "target-ess": 1000,
    "max-likelihood-evaluations": 200_000,
    "batch-size": 4000,
    "max-iterations": 100,
    "mcmc-steps": 4,
    "components": 6,
    "defensive-fraction": 0.1,
    "exploration-fraction": 0.1,
    "reference-frame": "detectors",
    "independent-runs": 1,
}
#: Where the refinement's mixtures place the sky and the time when both are free: the detectors'
#: frame (zenith, azimuth about the baseline, arrival time at the first detector) or the sky's.
REFERENCE_FRAMES = ("detectors", "sky")


def check_refinement_settings(settings: Mapping | None = None) -> dict:
    """Return the refinement settings with defaults filled in; raise ConfigError on a bad value.

    Checked before any likelihood call: the method, every count positive, the ESS target within
    the likelihood budget, the defensive and exploration shares in [0, 1).
    """
    given = dict(settings or {})
    unknown = sorted(set(given) - set(REFINEMENT_DEFAULTS))
    require(not unknown, "refinement", unknown, f"keys among {sorted(REFINEMENT_DEFAULTS)}")
    s = {**REFINEMENT_DEFAULTS, **given}
    require_choice("refinement.method", s["method"], REFINEMENT_METHODS)
    require_choice("refinement.reference-frame", s["reference-frame"], REFERENCE_FRAMES)
    for key in (
        "target-ess",
        "max-likelihood-evaluations",
        "batch-size",
        "max-iterations",
        "mcmc-steps",
        "components",
        "independent-runs",
    ):
        value = s[key]
        require(
            isinstance(value, int) and not isinstance(value, bool) and value > 0,
            f"refinement.{key}",
            value,
            "a whole number > 0",
        )
    require(
        s["target-ess"] <= s["max-likelihood-evaluations"],
        "refinement.target-ess",
        s["target-ess"],
        f"at most refinement.max-likelihood-evaluations = {s['max-likelihood-evaluations']} "
        "(an effective sample size cannot exceed the samples the budget buys)",
    )
    for key in ("defensive-fraction", "exploration-fraction"):
        share = s[key]
        require(
            isinstance(share, (int, float)) and not isinstance(share, bool) and 0 <= share < 1,
            f"refinement.{key}",
            share,
            "a number in [0, 1)",
        )
    return s


def check_inference_settings(settings: Mapping) -> None:
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
    refinement = check_refinement_settings(settings.get("refinement"))
    require(
        refinement["target-ess"]
        <= settings["n-samples"] + refinement["max-likelihood-evaluations"],
        "refinement.target-ess",
        refinement["target-ess"],
        "at most n-samples + refinement.max-likelihood-evaluations",
    )


def check_config(gw: Mapping) -> None:
    """Raise :class:`ConfigError` for the first invalid setting anywhere in the gw section.

    Runs every stage's own check on the settings that stage will get (sliced as the rules
    slice them), plus the checks across stages that no single stage can make: the prior the
    inference draws injections from holds the trained parameters, and every configured event
    resolves to an analysis inside the trained band.
    """
    from twinflow.gw import settings as slicing
    from twinflow.gw.prior import check_prior
    from twinflow.gw.psd import check_settings as check_psd_settings
    from twinflow.gw.waveforms import check_approximant

    for detector in gw["detectors"]:
        require(detector in KNOWN_DETECTORS, "gw.detectors", detector, f"one of {KNOWN_DETECTORS}")
        check_psd_settings(slicing.psd_settings_for(gw, detector))
    # The dataset's own checks build bilby priors (bilby takes ~2 s to import), so at parse
    # time the prior is checked structurally; the shard jobs build it.
    shard = slicing.dataset_shard_settings_for(gw)
    check_analysis(shard)
    check_approximant(shard["approximant"])
    check_prior(gw["dataset"]["prior"], "dataset.prior")
    domain = slicing.dataset_domain_settings_for(gw)
    if domain["domain"]["nodes"] != "auto":
        domain_from_nodes(domain["domain"]["nodes"], domain)
    check_batch_settings(slicing.batch_settings_for(gw))
    train = gw["train"]
    check_train_settings(train)
    check_architecture(train["model"])
    sweep = gw["inference"]["sweep"]
    labels = [entry.get("label") for entry in sweep["settings"]]
    for i, label in enumerate(labels):
        require_safe_name(f"inference.sweep.settings[{i}].label", label)
    require(len(set(labels)) == len(labels), "inference.sweep.settings", labels, "distinct labels")
    for name in slicing.inference_event_names(gw):
        settings = slicing.inference_settings_for(gw, name)
        check_inference_settings(settings)
        if settings["kind"] == "strain":
            from twinflow.gw.strain_sources import check_strain_files

            analysis = check_strain_event(
                settings["strain"], settings["analysis"], f"inference.events.{name}"
            )
            check_strain_files(
                name,
                {
                    "event": settings["strain"],
                    "analysis": analysis,
                    "post-trigger-duration": settings["post-trigger-duration"],
                },
            )
        else:
            resolve_analysis({}, settings["analysis"], "gw")
    for name in slicing.refused_events(gw):  # not analysed, but their settings must be valid
        check_strain_event(
            gw["inference"]["events"][name],
            {k: gw[k] for k in slicing.INFERENCE_ANALYSIS_KEYS},
            f"inference.events.{name}",
        )
    if "peer" in gw:
        check_peer_settings(gw["peer"], slicing.inference_event_names(gw))
    if "pp" in gw:
        check_pp_settings(gw["pp"])


#: dynesty's sampling methods as bilby offers them (``sample``).
PEER_SAMPLE_METHODS = ("acceptance-walk", "act-walk", "rwalk", "unif", "rslice", "slice")


def check_peer_sampler_settings(peer: Mapping, key: str = "peer") -> None:
    """Raise :class:`ConfigError` for invalid dynesty settings of the peer check."""
    _require_int(f"{key}.nlive", peer["nlive"], 1)
    require_positive(f"{key}.dlogz", peer["dlogz"])
    require_choice(f"{key}.sample", peer["sample"], PEER_SAMPLE_METHODS)
    _require_int(f"{key}.naccept", peer["naccept"], 1)
    _require_int(f"{key}.npool", peer["npool"], 1)
    _require_int(f"{key}.seed", peer["seed"], 0)


def check_peer_settings(peer: Mapping, event_names: Sequence[str]) -> None:
    """Raise :class:`ConfigError` for invalid ``gw.peer`` settings: events the inference does
    not analyse, non-positive live points, an unknown sampling method."""
    events = peer["events"]
    require(
        isinstance(events, list) and len(events) >= 1,
        "peer.events",
        events,
        "a non-empty list of events of gw.inference",
    )
    for name in events:
        require_safe_name("peer.events", name)
        require(
            name in event_names,
            "peer.events",
            name,
            f"an event the inference analyses, one of {list(event_names)}",
        )
    require(len(set(events)) == len(events), "peer.events", events, "distinct events")
    check_peer_sampler_settings(peer)


def check_pp_settings(pp: Mapping) -> None:
    """Raise :class:`ConfigError` for invalid ``gw.pp`` settings (the P-P injections)."""
    _require_int("pp.n-injections", pp["n-injections"], 1)
    require(
        isinstance(pp["seed"], int) and not isinstance(pp["seed"], bool),
        "pp.seed",
        pp["seed"],
        "an integer",
    )


STRAIN_SUFFIXES = (".hdf5", ".h5", ".hdf", ".gwf", ".txt", ".dat", ".csv")

#: Event keys that may override the gw section's analysis settings.
EVENT_ANALYSIS_KEYS = (
    "detectors",
    "duration",
    "sampling-frequency",
    "minimum-frequency",
    "maximum-frequency",
)

EVENT_KEYS = (
    "trigger-time",
    *EVENT_ANALYSIS_KEYS,
    "data-dict",
    "channel-dict",
    "psd-dict",
    "published",
)


def frequency_map(value, detectors, key: str) -> dict[str, float]:
    """Return a per-detector frequency from a number or a {detector: number} map."""
    if isinstance(value, Mapping):
        missing = [d for d in detectors if d not in value]
        require(
            not missing,
            key,
            dict(value),
            f"a frequency for every detector {list(detectors)} (missing {missing})",
        )
        out = {d: value[d] for d in detectors}
    else:
        out = {d: value for d in detectors}
    for d, f in out.items():
        require_positive(f"{key}.{d}" if isinstance(value, Mapping) else key, f)
    return {d: float(f) for d, f in out.items()}


def check_band(
    f_min: Mapping, f_max: Mapping, sampling_frequency: float, duration: float, key: str = ""
) -> None:
    """Check each detector's band: below Nyquist, f_min < f_max, at least one bin wide."""
    prefix = f"{key}." if key else ""
    for d in f_min:
        require_nyquist(
            f"{prefix}maximum-frequency" + (f".{d}" if len(set(f_max.values())) > 1 else ""),
            f_max[d],
            sampling_frequency,
        )
        if not f_min[d] < f_max[d]:
            raise ConfigError(
                f"{prefix}minimum-frequency = {f_min[d]!r} Hz is not below maximum-frequency = "
                f"{f_max[d]!r} Hz for {d}"
            )
        if f_max[d] - f_min[d] < 1.0 / duration:
            raise ConfigError(
                f"the band {f_min[d]}-{f_max[d]} Hz of {d} holds no frequency bin "
                f"(delta_f = {1 / duration:g} Hz)"
            )


def resolve_analysis(event: Mapping, analysis: Mapping, key: str) -> dict:
    """Return the event's analysis settings: its own keys, else the gw section's."""
    out = {k: event.get(k, analysis[k]) for k in EVENT_ANALYSIS_KEYS}
    detectors = out["detectors"]
    require(
        isinstance(detectors, (list, tuple)) and len(detectors) > 0,
        f"{key}.detectors",
        detectors,
        f"a non-empty list of detectors from {list(KNOWN_DETECTORS)}",
    )
    for d in detectors:
        require(
            d in KNOWN_DETECTORS,
            f"{key}.detectors",
            detectors,
            f"detectors from {list(KNOWN_DETECTORS)}",
        )
    require_positive(f"{key}.duration", out["duration"])
    require_positive(f"{key}.sampling-frequency", out["sampling-frequency"])
    require(
        float(out["duration"] * out["sampling-frequency"]).is_integer(),
        f"{key}.duration",
        out["duration"],
        "duration x sampling-frequency must be a whole number of samples",
    )
    out["minimum-frequency"] = frequency_map(
        out["minimum-frequency"], detectors, f"{key}.minimum-frequency"
    )
    out["maximum-frequency"] = frequency_map(
        out["maximum-frequency"], detectors, f"{key}.maximum-frequency"
    )
    check_band(
        out["minimum-frequency"],
        out["maximum-frequency"],
        out["sampling-frequency"],
        out["duration"],
        key,
    )
    out["detectors"] = list(detectors)
    return out


def check_strain_event(event: Mapping, analysis: Mapping, key: str) -> dict:
    """Check a real event's settings (keys, files) before any work; return its analysis settings."""
    require(isinstance(event, Mapping), key, event, "a mapping with trigger-time and data-dict")
    unknown = [k for k in event if k not in EVENT_KEYS]
    require(not unknown, key, sorted(event), f"keys from {list(EVENT_KEYS)} (unknown: {unknown})")
    t = event.get("trigger-time")
    require(
        isinstance(t, (int, float)) and not isinstance(t, bool) and t > 0,
        f"{key}.trigger-time",
        t,
        "a GPS time in seconds",
    )
    resolved = resolve_analysis(event, analysis, key)
    data = event.get("data-dict") or {}
    require(isinstance(data, Mapping), f"{key}.data-dict", data, "a map detector -> strain file")
    for d in resolved["detectors"]:
        require(
            d in data,
            f"{key}.data-dict",
            dict(data),
            f"a strain file for every analysed detector {resolved['detectors']} (missing {d})",
        )
        path = require_file(f"{key}.data-dict.{d}", data[d])
        require(
            path.suffix.lower() in STRAIN_SUFFIXES,
            f"{key}.data-dict.{d}",
            str(path),
            f"a strain file with suffix in {list(STRAIN_SUFFIXES)}",
        )
        if path.suffix.lower() == ".gwf":
            channel = (event.get("channel-dict") or {}).get(d)
            require(
                bool(channel),
                f"{key}.channel-dict.{d}",
                channel,
                "a channel name, needed to read GWF files",
            )
    for d, path in (event.get("psd-dict") or {}).items():
        require(
            d in KNOWN_DETECTORS, f"{key}.psd-dict", d, f"detectors from {list(KNOWN_DETECTORS)}"
        )
        require_file(f"{key}.psd-dict.{d}", path)
    published_intervals(event.get("published"), f"{key}.published")
    return resolved


def check_analysis(settings: Mapping) -> None:
    for key in ("duration", "sampling-frequency", "minimum-frequency", "maximum-frequency"):
        require_positive(key, settings[key])
    require_nyquist(
        "maximum-frequency", settings["maximum-frequency"], settings["sampling-frequency"]
    )
    require(
        settings["minimum-frequency"] < settings["maximum-frequency"],
        "minimum-frequency",
        settings["minimum-frequency"],
        f"below maximum-frequency = {settings['maximum-frequency']}",
    )
    UniformFrequencyDomain(settings["duration"], settings["sampling-frequency"])


def domain_from_nodes(nodes: Sequence[float], settings: Mapping) -> MultibandedFrequencyDomain:
    domain = MultibandedFrequencyDomain(
        nodes, settings["duration"], settings["sampling-frequency"]
    )
    if (
        domain.f_min != settings["minimum-frequency"]
        or domain.f_max != settings["maximum-frequency"]
    ):
        raise ConfigError(
            f"dataset.domain.nodes = {list(nodes)!r} is invalid: the first and last nodes must be "
            f"minimum-frequency = {settings['minimum-frequency']} and maximum-frequency = "
            f"{settings['maximum-frequency']} Hz"
        )
    return domain
