"""Resolve the settings each gw stage runs with from the ``gw`` section of the config.

The workflow (``workflow/rules/common.smk``) and the CLI both call these, so a rule's
``params:`` and a by-hand run see exactly the same values.
"""

from __future__ import annotations

from collections.abc import Mapping

from twinflow.core.settings import require_choice
from twinflow.gw.detectors import KNOWN_DETECTORS
from twinflow.gw.prior import EXTRINSIC

# What the PSD stage needs from the gw section's top level, in a stable order.
ANALYSIS_KEYS = ("duration", "sampling-frequency", "maximum-frequency")


def psd_settings_for(gw: Mapping, detector: str) -> dict:
    """Return the PSD-stage settings for one detector.

    Only this detector's curve or files are included, so editing another detector's entry
    does not rerun this detector's job.
    """
    require_choice("detectors", detector, KNOWN_DETECTORS)
    psd = gw["psd"]
    sim = {k: v for k, v in psd["simulation"].items() if k != "curves"}
    sim["curve"] = psd["simulation"]["curves"].get(detector)
    files = {
        "strain": list(psd["files"].get("strain", {}).get(detector, [])),
        "channel": psd["files"].get("channel-dict", {}).get(detector),
    }
    return {
        "detector": detector,
        **{key: gw[key] for key in ANALYSIS_KEYS},
        **{k: v for k, v in psd.items() if k not in ("simulation", "files")},
        "simulation": sim,
        "files": files,
    }


# --- dataset ---------------------------------------------------------------------------------
# Each dataset rule gets only what it uses: the waveform shards never see the extrinsic prior
# or the masks, so editing those reruns only the training inputs, not the waveforms.
DATASET_ANALYSIS_KEYS = (
    "duration",
    "sampling-frequency",
    "minimum-frequency",
    "maximum-frequency",
)


def _intrinsic_prior(prior: Mapping) -> dict:
    return {k: v for k, v in prior.items() if k not in EXTRINSIC}


def dataset_domain_settings_for(gw: Mapping) -> dict:
    """Return the settings of the domain step (prior and approximant only for ``nodes: auto``)."""
    ds = gw["dataset"]
    settings = {**{k: gw[k] for k in DATASET_ANALYSIS_KEYS}, "domain": dict(ds["domain"])}
    if ds["domain"]["nodes"] == "auto":
        settings.update({k: ds[k] for k in ("seed", "approximant", "reference-frequency")})
        settings["prior"] = _intrinsic_prior(ds["prior"])
    else:
        settings["domain"] = {"nodes": ds["domain"]["nodes"]}
    return settings


def dataset_shard_settings_for(gw: Mapping) -> dict:
    """Return the settings of a waveform shard: analysis band, waveform model, intrinsic prior."""
    ds = gw["dataset"]
    # n-shards is left out: adding shards must not rerun the existing ones.
    keys = (
        "seed",
        "approximant",
        "reference-frequency",
        "reference-distance",
        "shard-size",
        "chunk-size",
    )
    return {
        **{k: gw[k] for k in DATASET_ANALYSIS_KEYS},
        **{k: ds[k] for k in keys},
        "prior": _intrinsic_prior(ds["prior"]),
    }


def batch_settings_for(gw: Mapping) -> dict:
    """Return the settings of the on-the-fly training inputs (``twinflow.gw.dataset.tokens``).

    Detectors, analysis band, the extrinsic prior, the projection's reference time and
    post-trigger duration, and the token masks.
    """
    ds = gw["dataset"]
    return {
        "detectors": list(gw["detectors"]),
        **{k: gw[k] for k in DATASET_ANALYSIS_KEYS},
        "prior": {k: v for k, v in ds["prior"].items() if k in EXTRINSIC},
        "reference-time": ds["reference-time"],
        "post-trigger-duration": ds["post-trigger-duration"],
        "masks": ds["masks"],
    }


# --- train ---------------------------------------------------------------------------------


def train_settings_for(gw: Mapping) -> dict:
    """Return the settings of the training stage: ``gw.train`` and the on-the-fly batch settings.

    The waveform shards reach training as input files, so only what the batches are made of
    (detectors, band, extrinsic prior, reference time, masks) and the training section itself
    are parameters: editing them reruns training, not the dataset.
    """
    return {"train": dict(gw["train"]), "batch": batch_settings_for(gw)}


# --- inference ---------------------------------------------------------------------------------
INJECTION_PREFIX = "injection-"
INFERENCE_SAMPLING_KEYS = (
    "seed",
    "device",
    "n-samples",
    "batch-size",
    "phase-marginalization",
    "tukey-roll-off",
    "refinement",
)
INFERENCE_ANALYSIS_KEYS = (
    "detectors",
    "duration",
    "sampling-frequency",
    "minimum-frequency",
    "maximum-frequency",
)


def inference_event_names(gw: Mapping) -> list[str]:
    """Return the events the inference stage analyses: ``injection-0 ..`` and the configured
    events, less those the trained prior cannot hold (:func:`refused_events`)."""
    from twinflow.core.settings import ConfigError, require_safe_name

    inference = gw["inference"]
    names = [f"{INJECTION_PREFIX}{i}" for i in range(inference["injections"]["n"])]
    for name in inference["events"]:
        require_safe_name(f"inference.events.{name}", name)
        if name.startswith(INJECTION_PREFIX):
            raise ConfigError(
                f"inference.events.{name}: event names starting with {INJECTION_PREFIX!r} are "
                "reserved for the injections"
            )
    refused = refused_events(gw)
    return names + [name for name in inference["events"] if name not in refused]


def refused_events(gw: Mapping) -> dict[str, str]:
    """Return ``{event: one-line reason}`` for the configured events whose ``published``
    chirp mass lies outside ``gw.dataset.prior``: they are not analysed, and the collected
    summary lists them (as a bilby_pipe user's out-of-prior event fails before sampling)."""
    from twinflow.gw.published import refusal

    prior = gw["dataset"]["prior"]
    out = {}
    for name, event in gw["inference"]["events"].items():
        reason = refusal(name, (event or {}).get("published"), prior)
        if reason is not None:
            out[name] = reason
    return out


def real_event_names(gw: Mapping) -> list[str]:
    """Return the configured real events that are analysed (not refused)."""
    refused = refused_events(gw)
    return [name for name in gw["inference"]["events"] if name not in refused]


def _inference_common(gw: Mapping) -> dict:
    inference, ds, psd = gw["inference"], gw["dataset"], gw["psd"]
    return {
        **{k: inference[k] for k in INFERENCE_SAMPLING_KEYS},
        "analysis": {k: gw[k] for k in INFERENCE_ANALYSIS_KEYS},
        "prior": dict(ds["prior"]),
        **{
            k: ds[k]
            for k in (
                "approximant",
                "reference-frequency",
                "reference-time",
                "post-trigger-duration",
            )
        },
        # real events' Welch PSDs are made as the PSD banks the model was trained on
        "psd": {k: psd[k] for k in ("window", "overlap", "average")},
    }


def inference_settings_for(gw: Mapping, event: str) -> dict:
    """Return the settings of one event's inference job (only that event's entries).

    An injection carries its index and the injections' seed, not their number, so adding
    injections does not rerun the existing ones.
    """
    from twinflow.core.settings import ConfigError

    inference = gw["inference"]
    settings = {"event": event, **_inference_common(gw)}
    if event.startswith(INJECTION_PREFIX):
        index = int(event[len(INJECTION_PREFIX) :])
        settings.update(
            kind="injection",
            injection={"index": index, "seed": inference["injections"]["seed"]},
        )
        if inference["injections"].get("trigger-time") is not None:  # else the reference time
            settings["injection"]["trigger-time"] = inference["injections"]["trigger-time"]
    elif event in inference["events"]:
        from twinflow.gw.published import refuse_outside_prior

        refuse_outside_prior(
            event, inference["events"][event].get("published"), gw["dataset"]["prior"]
        )
        settings.update(kind="strain", strain=dict(inference["events"][event]))
    else:
        raise ConfigError(
            f"event = {event!r} is not configured: choose one of {inference_event_names(gw)}"
        )
    return settings


def inference_sweep_settings_for(gw: Mapping) -> dict:
    """Return the settings of the analysis-settings sweep: its event's settings plus the variants."""
    sweep = gw["inference"]["sweep"]
    return {**inference_settings_for(gw, sweep["event"]), "sweep": list(sweep["settings"])}


# --- peer check and P-P test -------------------------------------------------------------------
#: What the dynesty run of an event needs from its inference settings: the event's data, the
#: prior and the likelihood, not how our sampler runs (so editing those does not rerun dynesty).
PEER_EVENT_KEYS = (
    "event",
    "kind",
    "injection",
    "strain",
    "analysis",
    "prior",
    "approximant",
    "reference-frequency",
    "reference-time",
    "post-trigger-duration",
    "psd",
    "tukey-roll-off",
    "phase-marginalization",
)
PEER_SAMPLER_KEYS = ("nlive", "dlogz", "sample", "naccept", "npool", "seed")


def peer_event_names(gw: Mapping) -> list[str]:
    """Return the events the peer check runs dynesty on (``gw.peer.events``, checked)."""
    from twinflow.gw.validation import check_peer_settings

    check_peer_settings(gw["peer"], inference_event_names(gw))
    return list(gw["peer"]["events"])


def peer_settings_for(gw: Mapping, event: str) -> dict:
    """Return the settings of one event's dynesty run: the event, prior and likelihood as our
    inference sees them, the model's parameters (they decide the phase marginalisation) and
    ``gw.peer``'s sampler settings."""
    inference = inference_settings_for(gw, event)
    return {
        **{k: inference[k] for k in PEER_EVENT_KEYS if k in inference},
        "model-parameters": gw["train"]["parameters"],
        "peer": {k: gw["peer"][k] for k in PEER_SAMPLER_KEYS},
    }


def pp_event_names(gw: Mapping) -> list[str]:
    """Return the P-P injections: ``injection-0 .. injection-{n-1}`` of ``gw.pp``."""
    return [f"{INJECTION_PREFIX}{i}" for i in range(gw["pp"]["n-injections"])]


def pp_settings_for(gw: Mapping, event: str) -> dict:
    """Return the inference settings of one P-P injection.

    Exactly an injection's settings of ``gw.inference`` (sampling, refinement, prior,
    likelihood), with the injections drawn from ``gw.pp.seed``'s streams instead of
    ``gw.inference.injections.seed``, so the P-P set is independent of the default injections.
    """
    from twinflow.core.settings import ConfigError

    if event not in pp_event_names(gw):
        raise ConfigError(
            f"event = {event!r} is not a P-P injection: choose injection-0 .. "
            f"injection-{gw['pp']['n-injections'] - 1}"
        )
    settings = inference_settings_for(gw, event)
    settings["injection"] = {**settings["injection"], "seed": gw["pp"]["seed"]}
    return settings
