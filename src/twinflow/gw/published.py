"""Published parameters of a real event, and the refusal of events the trained prior cannot hold.

An event of ``gw.inference.events`` may carry a ``published`` block: a catalogue's medians and
90 % credible intervals as the catalogue prints them (``{median, minus, plus}``), e.g. GWTC-1
(arXiv:1811.12907) Table III, which gives source-frame masses and the redshift. This module
turns them into the parameters our model infers (detector frame) for the report, and refuses,
before any work, an event whose published detector-frame chirp mass lies outside the prior the
model was trained on: its posterior would pile against a prior bound and mean nothing.

Detector-frame chirp mass: ``chirp_mass = chirp_mass_source * (1 + z)`` with the published
median redshift applied to the median and to both ends of the source-frame interval. This
ignores the correlation between the source-frame mass and the redshift, so the interval is
wider than the detector-frame interval of the catalogue's own samples (the source-frame
spread already holds the distance's), and it is a fair band to compare a median with.

Torch-free and bilby-free: the Snakefile imports it at parse time.
"""

from __future__ import annotations

from collections.abc import Mapping

from twinflow.core.settings import ConfigError, require

#: The parameters a ``published`` block may give, as bilby names them.
PUBLISHED_PARAMETERS = ("chirp_mass_source", "redshift", "luminosity_distance", "chi_eff")

#: Parameters whose published interval must lie inside the trained prior (the best measured:
#: a model whose prior misses it cannot describe the event).
REQUIRED_INSIDE_PRIOR = ("chirp_mass",)

UNITS = {"chirp_mass": "Msun", "luminosity_distance": "Mpc", "chi_eff": ""}


def _interval(entry: Mapping, key: str) -> tuple[float, float, float]:
    """Return (median, lower, upper) of a ``{median, minus, plus}`` entry (checked)."""
    require(
        isinstance(entry, Mapping) and {"median", "minus", "plus"} <= set(entry),
        key,
        entry,
        "{median, minus, plus}: the median and the distances to the 90 % bounds",
    )
    median, minus, plus = (float(entry[k]) for k in ("median", "minus", "plus"))
    require(minus >= 0 and plus >= 0, key, dict(entry), "minus and plus >= 0")
    return median, median - minus, median + plus


def published_intervals(published: Mapping | None, key: str = "published") -> dict:
    """Return ``{parameter: (median, lower, upper)}`` in the parameters the model infers.

    ``chirp_mass`` is the detector-frame chirp mass (needs ``chirp_mass_source`` and
    ``redshift``); ``luminosity_distance`` and ``chi_eff`` are passed on as published.
    """
    if not published:
        return {}
    unknown = [k for k in published if k not in (*PUBLISHED_PARAMETERS, "reference")]
    require(
        not unknown,
        key,
        sorted(published),
        f"keys from {['reference', *PUBLISHED_PARAMETERS]} (unknown: {unknown})",
    )
    out = {}
    if "chirp_mass_source" in published:
        require(
            "redshift" in published,
            f"{key}.redshift",
            None,
            "the published redshift, to convert chirp_mass_source to the detector frame",
        )
        z = _interval(published["redshift"], f"{key}.redshift")[0]
        source = _interval(published["chirp_mass_source"], f"{key}.chirp_mass_source")
        out["chirp_mass"] = tuple(m * (1 + z) for m in source)
    for name in ("luminosity_distance", "chi_eff"):
        if name in published:
            out[name] = _interval(published[name], f"{key}.{name}")
    return out


def prior_range(spec) -> tuple[float, float] | None:
    """Return (minimum, maximum) of one prior entry of the config, or None if it has none."""
    if isinstance(spec, Mapping) and "minimum" in spec and "maximum" in spec:
        return float(spec["minimum"]), float(spec["maximum"])
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        return float(spec), float(spec)
    return None


def refusal(name: str, published: Mapping | None, prior: Mapping) -> str | None:
    """Return the one-line reason the trained ``prior`` cannot hold event ``name``, or None.

    ``prior`` is the config's (or a checkpoint's) prior specification, bilby names.
    """
    intervals = published_intervals(published, f"inference.events.{name}.published")
    for parameter in REQUIRED_INSIDE_PRIOR:
        if parameter not in intervals or parameter not in prior:
            continue
        bounds = prior_range(prior[parameter])
        if bounds is None:
            continue
        median, lower, upper = intervals[parameter]
        if bounds[0] <= lower and upper <= bounds[1]:
            continue
        unit = UNITS.get(parameter, "")
        return (
            f"{name}: refused before sampling: published detector-frame {parameter} {median:.3g} "
            f"{unit} (90 % {lower:.3g}-{upper:.3g}) is not inside the trained prior's "
            f"{parameter} range {bounds[0]:g}-{bounds[1]:g} {unit}: train a model whose "
            "gw.dataset.prior covers it (config/events.yaml says which settings)"
        )
    return None


def refuse_outside_prior(name: str, published: Mapping | None, prior: Mapping) -> None:
    """Raise :class:`ConfigError` with :func:`refusal`'s line if the prior cannot hold the event."""
    reason = refusal(name, published, prior)
    if reason is not None:
        raise ConfigError(reason)
