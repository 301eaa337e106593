"""The dataset's frequency grid: check the domain settings, resolve the multibanded nodes
(given, or proposed from the prior's waveforms) and write/read domain.json.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from twinflow.core.io import write_json
from twinflow.core.seeding import numpy_rng
from twinflow.core.settings import (
    ConfigError,
    require,
    require_file,
)
from twinflow.gw.domain import (
    MultibandedFrequencyDomain,
    domain_from_settings,
    propose_nodes,
)
from twinflow.gw.prior import EXTRINSIC, build_prior, sample, split_prior, with_placeholders
from twinflow.gw.validation import check_analysis, domain_from_nodes
from twinflow.gw.waveforms import WaveformGenerator, check_approximant

ANALYSIS_KEYS = ("duration", "sampling-frequency", "minimum-frequency", "maximum-frequency")


def intrinsic_spec(prior_spec: Mapping) -> dict:
    """Return the intrinsic entries of a prior spec (what the shards are drawn from)."""
    return {k: v for k, v in prior_spec.items() if k not in EXTRINSIC}


def check_intrinsic_prior(spec: Mapping):
    """Build the intrinsic prior; the extrinsic entries are checked by the batch settings."""
    # A full prior is needed for bilby's checks; extrinsic parameters are fixed placeholders here.
    prior = build_prior(with_placeholders(spec, EXTRINSIC))
    return split_prior(prior)[0]


def check_domain_settings(settings: Mapping) -> None:
    """Raise :class:`ConfigError` for invalid domain settings, before any work."""
    check_analysis(settings)
    nodes = settings["domain"]["nodes"]
    if nodes == "auto":
        tol = settings["domain"]["tolerance"]
        require(
            isinstance(tol, (int, float)) and 0 < tol < 1,
            "dataset.domain.tolerance",
            tol,
            "a fraction in (0, 1)",
        )
        require(
            isinstance(settings["domain"]["n-waveforms"], int)
            and settings["domain"]["n-waveforms"] >= 1,
            "dataset.domain.n-waveforms",
            settings["domain"]["n-waveforms"],
            "an integer >= 1",
        )
        check_approximant(settings["approximant"])
        check_intrinsic_prior(settings["prior"])
    else:
        require(
            isinstance(nodes, list),
            "dataset.domain.nodes",
            nodes,
            "'auto' or a list of frequencies [Hz]",
        )
        domain_from_nodes(nodes, settings)


def resolve_domain(settings: Mapping, out: str | Path, log=print) -> MultibandedFrequencyDomain:
    """Write the multibanded domain (``domain.json``): configured nodes, or proposed ones."""
    check_domain_settings(settings)
    nodes = settings["domain"]["nodes"]
    proposal = None
    if nodes == "auto":
        fs, duration = settings["sampling-frequency"], settings["duration"]
        f_min, f_max = settings["minimum-frequency"], settings["maximum-frequency"]
        # Waveforms on the full band: a one-band "domain" over [f_min, f_max) at delta_f = 1/T.
        span = (f_max - f_min) * duration
        tokens_ok = span % 16 == 0
        if not tokens_ok:
            raise ConfigError(
                f"maximum-frequency - minimum-frequency = {f_max - f_min:g} Hz is not a whole number of "
                f"16-bin tokens at delta_f = 1/duration ({16 / duration:g} Hz): adjust either for nodes: auto"
            )
        full = MultibandedFrequencyDomain(
            [f_min, f_max], duration, fs, key="minimum-/maximum-frequency"
        )
        generator = WaveformGenerator(
            full, settings["approximant"], settings["reference-frequency"]
        )
        intrinsic = check_intrinsic_prior(settings["prior"])
        draws = sample(
            intrinsic, settings["domain"]["n-waveforms"], numpy_rng(settings["seed"], "domain")
        )
        h_plus, h_cross = generator.uniform(draws)
        waveforms = np.zeros((2 * len(h_plus), len(full.base)), dtype=complex)
        waveforms[:, full.uniform_slice] = np.concatenate([h_plus, h_cross])
        nodes = propose_nodes(
            waveforms, duration, fs, f_min, f_max, settings["domain"]["tolerance"]
        )
        proposal = {
            "tolerance": settings["domain"]["tolerance"],
            "n-waveforms": settings["domain"]["n-waveforms"],
        }
    domain = domain_from_nodes(nodes, settings)
    write_json(
        out,
        {
            "domain": domain.settings,
            "n-bins": domain.n_bins,
            "n-tokens": domain.n_tokens,
            "proposal": proposal,
        },
    )
    log(f"domain: {domain}")
    return domain


def load_domain(path: str | Path) -> MultibandedFrequencyDomain:
    """Return the domain written by :func:`resolve_domain` (or stored in an index)."""
    data = json.loads(require_file("domain", path).read_text())
    return domain_from_settings(data["domain"])
