"""The binary-black-hole prior: a bilby ``PriorDict`` built from structured YAML.

Each bilby parameter name maps either to a number (held fixed: a bilby ``DeltaFunction``) or to
``{distribution: <class>, <keyword>: <value>, ...}`` for one of the whitelisted bilby classes
below; nothing in the config is ever evaluated as code. Example (the CPU default)::

    chirp_mass: {distribution: UniformInComponentsChirpMass, minimum: 20, maximum: 40}
    mass_ratio: {distribution: UniformInComponentsMassRatio, minimum: 0.5, maximum: 1}
    chi_1: {distribution: Uniform, minimum: -0.8, maximum: 0.8}
    ra: 1.375                                    # a fixed sky position, if wanted
    geocent_time: {distribution: Uniform, minimum: -0.05, maximum: 0.05}   # s from trigger

Intrinsic parameters (masses, spins, theta_jn, phase) are drawn when the waveform dataset is
simulated; extrinsic ones (``EXTRINSIC``) are drawn on the fly at training time.
``geocent_time`` is always an offset in seconds from the trigger (or reference) time.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from twinflow.core.settings import ConfigError, require

EXTRINSIC = ("luminosity_distance", "ra", "dec", "psi", "geocent_time")
MASS_PARAMETERS = ("chirp_mass", "mass_ratio", "mass_1", "mass_2", "total_mass")
ALIGNED_SPINS = ("chi_1", "chi_2")
PRECESSING_SPINS = ("a_1", "a_2", "tilt_1", "tilt_2", "phi_12", "phi_jl")
INTRINSIC = (*MASS_PARAMETERS, *ALIGNED_SPINS, *PRECESSING_SPINS, "theta_jn", "phase")
KNOWN_PARAMETERS = (*INTRINSIC, *EXTRINSIC)
#: Where each parameter is physical: (lowest, highest, whether the lowest is excluded).
#: Angles follow bilby's ranges; ``geocent_time`` (an offset in s) is bounded by the batches.
PHYSICAL_RANGES = {
    "chirp_mass": (0.0, np.inf, True),
    "total_mass": (0.0, np.inf, True),
    "mass_1": (0.0, np.inf, True),
    "mass_2": (0.0, np.inf, True),
    "mass_ratio": (0.0, 1.0, True),
    "chi_1": (-1.0, 1.0, False),
    "chi_2": (-1.0, 1.0, False),
    "a_1": (0.0, 1.0, False),
    "a_2": (0.0, 1.0, False),
    "tilt_1": (0.0, np.pi, False),
    "tilt_2": (0.0, np.pi, False),
    "phi_12": (0.0, 2 * np.pi, False),
    "phi_jl": (0.0, 2 * np.pi, False),
    "theta_jn": (0.0, np.pi, False),
    "phase": (0.0, 2 * np.pi, False),
    "luminosity_distance": (0.0, np.inf, True),
    "ra": (0.0, 2 * np.pi, False),
    "dec": (-np.pi / 2, np.pi / 2, False),
    "psi": (0.0, np.pi, False),
}


def _distributions() -> dict:
    import bilby

    core, gw = bilby.core.prior, bilby.gw.prior
    return {
        "Uniform": core.Uniform,
        "LogUniform": core.LogUniform,
        "PowerLaw": core.PowerLaw,
        "Sine": core.Sine,
        "Cosine": core.Cosine,
        "Gaussian": core.Gaussian,
        "TruncatedGaussian": core.TruncatedGaussian,
        "DeltaFunction": core.DeltaFunction,
        "UniformInComponentsChirpMass": gw.UniformInComponentsChirpMass,
        "UniformInComponentsMassRatio": gw.UniformInComponentsMassRatio,
        "AlignedSpin": gw.AlignedSpin,
        "UniformSourceFrame": gw.UniformSourceFrame,
        "UniformComovingVolume": gw.UniformComovingVolume,
    }


DISTRIBUTIONS = (
    "Uniform",
    "LogUniform",
    "PowerLaw",
    "Sine",
    "Cosine",
    "Gaussian",
    "TruncatedGaussian",
    "DeltaFunction",
    "UniformInComponentsChirpMass",
    "UniformInComponentsMassRatio",
    "AlignedSpin",
    "UniformSourceFrame",
    "UniformComovingVolume",
)


def check_prior(spec: Mapping, key: str = "dataset.prior") -> None:
    """Raise :class:`ConfigError` naming the key for the first invalid entry of a prior spec."""
    require(
        isinstance(spec, Mapping) and len(spec) > 0,
        key,
        spec,
        "a mapping of bilby parameter names to priors",
    )
    for name, entry in spec.items():
        k = f"{key}.{name}"
        require(
            name in KNOWN_PARAMETERS,
            k,
            entry,
            f"a parameter named one of {list(KNOWN_PARAMETERS)}",
        )
        if isinstance(entry, bool) or not isinstance(entry, (int, float, Mapping)):
            raise ConfigError(
                f"{k} = {entry!r} is invalid: a number (fixed) or "
                "{distribution: <bilby class>, minimum: .., maximum: .., ...}"
            )
        if isinstance(entry, Mapping):
            dist = entry.get("distribution")
            require(
                dist in DISTRIBUTIONS, f"{k}.distribution", dist, f"one of {list(DISTRIBUTIONS)}"
            )
            for bound in ("minimum", "maximum"):
                if bound in entry:
                    v = entry[bound]
                    require(
                        isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v),
                        f"{k}.{bound}",
                        v,
                        "a finite number",
                    )
            if (
                "minimum" in entry
                and "maximum" in entry
                and not entry["minimum"] < entry["maximum"]
            ):
                raise ConfigError(
                    f"{k}.minimum = {entry['minimum']!r} is invalid: it must be below "
                    f"{k}.maximum = {entry['maximum']!r} (inverted prior bounds)"
                )
            for bound in ("minimum", "maximum"):
                if bound in entry:
                    _require_physical(name, entry[bound], f"{k}.{bound}")
        else:
            _require_physical(name, entry, k)
    masses = [p for p in MASS_PARAMETERS if p in spec]
    require(
        set(masses)
        in ({"chirp_mass", "mass_ratio"}, {"mass_1", "mass_2"}, {"total_mass", "mass_ratio"}),
        key,
        sorted(spec),
        "masses given as chirp_mass + mass_ratio, mass_1 + mass_2 or total_mass + mass_ratio",
    )
    aligned = [p for p in ALIGNED_SPINS if p in spec]
    precessing = [p for p in PRECESSING_SPINS if p in spec]
    require(
        not (aligned and precessing),
        key,
        sorted(spec),
        f"either aligned spins {list(ALIGNED_SPINS)} or precessing spins {list(PRECESSING_SPINS)}, not both",
    )
    missing = [p for p in (*EXTRINSIC, "theta_jn", "phase") if p not in spec]
    require(not missing, key, sorted(spec), f"a prior (or fixed value) for every one of {missing}")


def with_placeholders(spec: Mapping, names) -> dict:
    """Return ``spec`` with fixed, physical stand-ins for the ``names`` it lacks.

    bilby's checks need a full binary prior; a stage that owns only part of it (the shards the
    intrinsic part, the batches the extrinsic part) fills the rest with these values, which it
    never draws from.
    """
    stand_ins = {"chirp_mass": 30.0, "mass_ratio": 1.0, "luminosity_distance": 1.0}
    return {**{k: stand_ins.get(k, 0.0) for k in names}, **spec}


def _require_physical(name: str, value: float, key: str) -> None:
    """Raise :class:`ConfigError` where a fixed value or prior bound is unphysical."""
    if name not in PHYSICAL_RANGES:
        return
    lo, hi, open_below = PHYSICAL_RANGES[name]
    inside = (value > lo if open_below else value >= lo) and value <= hi
    if not inside:
        low = f"({lo:g}" if open_below else f"[{lo:g}"
        raise ConfigError(
            f"{key} = {value!r} is invalid: {name} is physical only in {low}, {hi:g}]"
        )


def build_prior(spec: Mapping, key: str = "dataset.prior"):
    """Return the bilby ``PriorDict`` described by ``spec`` (checked first)."""
    from bilby.core.prior import DeltaFunction, PriorDict

    check_prior(spec, key)
    classes = _distributions()
    priors = {}
    for name, entry in spec.items():
        if not isinstance(entry, Mapping):
            priors[name] = DeltaFunction(float(entry), name=name)
            continue
        kwargs = {k: v for k, v in entry.items() if k != "distribution"}
        try:
            priors[name] = classes[entry["distribution"]](name=name, **kwargs)
        except (TypeError, ValueError) as err:
            raise ConfigError(
                f"{key}.{name} = {dict(entry)!r} is invalid for bilby's "
                f"{entry['distribution']}: {err}"
            ) from err
    return PriorDict(priors)


def is_fixed(prior) -> bool:
    from bilby.core.prior import DeltaFunction

    return isinstance(prior, DeltaFunction)


def split_prior(prior) -> tuple[dict, dict]:
    """Return the (intrinsic, extrinsic) parts of a ``PriorDict`` as plain dicts of priors."""
    intrinsic = {k: v for k, v in prior.items() if k not in EXTRINSIC}
    extrinsic = {k: v for k, v in prior.items() if k in EXTRINSIC}
    return intrinsic, extrinsic


def sampled_parameters(prior) -> list[str]:
    """Return the names of the parameters that are not fixed, in the prior's order."""
    return [k for k, v in prior.items() if not is_fixed(v)]


def sample(priors: Mapping, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Return ``n`` draws of each prior in ``priors`` from ``rng`` (reproducible by its seed).

    bilby samples through inverse-CDF ``rescale`` of uniform numbers, so drawing the uniforms
    from ``rng`` makes every draw reproducible without touching numpy's global state.
    """
    out = {}
    for name, prior in priors.items():
        if is_fixed(prior):
            out[name] = np.full(n, float(prior.peak))
        else:
            out[name] = np.asarray(prior.rescale(rng.uniform(size=n)), dtype=float)
    return out
