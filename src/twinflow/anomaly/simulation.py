"""The LHCO-like generator: an offline stand-in for the LHC Olympics R&D set, with the exact
density of its background, and the event samples of the anomaly scan drawn from it
(:func:`simulate_events`, the ``source: simulated`` branch of the events stage).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np

from twinflow.anomaly.events import Events
from twinflow.core.progress import progress
from twinflow.core.seeding import numpy_rng


def _gamma(mean: float, sd: float):
    """The gamma distribution (scipy, frozen) with this mean and standard deviation."""
    from scipy import stats  # here, not at the top: the Snakefile imports this module

    return stats.gamma((mean / sd) ** 2, scale=sd**2 / mean)


def _beta(mean: float, sd: float):
    """The beta distribution (scipy, frozen) with this mean and standard deviation."""
    from scipy import stats  # here, not at the top: the Snakefile imports this module

    total = mean * (1 - mean) / sd**2 - 1
    return stats.beta(mean * total, (1 - mean) * total)


#: The background's Gaussian copula: z1 (m_J1) - z3 (tau21_J1) and z2 (Delta m) - z4 (tau21_J2)
#: anticorrelated.
BACKGROUND_COPULA = np.array(
    [
        [1.0, 0.15, -0.33, -0.05],
        [0.15, 1.0, -0.05, -0.44],
        [-0.33, -0.05, 1.0, 0.15],
        [-0.05, -0.44, 0.15, 1.0],
    ]
)
#: The background's marginals at m_JJ = 3.5 TeV: (family, mean, sd, scales with m_JJ).
BACKGROUND_MARGINALS = (
    (_gamma, 0.14, 0.10, True),  # m_J1 [TeV]
    (_gamma, 0.17, 0.15, True),  # Delta m_J [TeV]
    (_beta, 0.58, 0.18, False),  # tau21_J1
    (_beta, 0.48, 0.19, False),  # tau21_J2
)
JET_MASS_EXPONENT = 0.3  # jet masses scale as (m_JJ / 3.5 TeV)^0.3


@dataclasses.dataclass
class LHCOLikeGenerator:
    """An offline stand-in for the LHC Olympics R&D set (dijet QCD plus a W' -> X(0.5) Y(0.1) signal).

    Background: m_JJ ~ m^-5.25 times a logistic turn-on at 2.6 TeV (width 0.15 TeV), which gives
    d ln N/dm = -1.5 /TeV at 3.5 TeV and 12.5% of events in 3.3-3.7 TeV. The jet features follow
    a Gaussian copula with gamma marginals for the masses (m_J1 0.14 +- 0.10, Delta m_J
    0.17 +- 0.15 TeV at m_JJ = 3.5 TeV, scaling as (m_JJ/3.5)^0.3) and beta marginals for tau21
    (0.58 +- 0.18, 0.48 +- 0.19); corr(m_J1, tau21_J1) and corr(Delta m_J, tau21_J2) are about
    -0.3 and -0.4, as in the real set (:data:`BACKGROUND_COPULA`, :data:`BACKGROUND_MARGINALS`).
    Their exact density is :meth:`background_log_prob`.

    Signal: m_JJ ~ N(3.5, 0.12) for 70% of events and a broad low tail N(3.3, 0.4) for the rest
    (radiation, mis-reconstruction), so 73% lie in 3.3-3.7 TeV (S/B = 0.6% there for 1000 signal
    events on 1M background); in 70% of events both jets carry
    their resonance mass (m_Y = 0.1, m_X = 0.5 TeV, 7% resolution), otherwise one jet takes a
    QCD-like mass; tau21 ~ 0.37 +- 0.14 (J1) and 0.21 +- 0.13 (J2).
    """

    spectrum_index: float = 5.25
    turn_on: float = 2.6
    turn_on_width: float = 0.15
    mass_range: tuple[float, float] = (1.8, 9.0)

    def background_mjj(self, n: int, rng: np.random.Generator) -> np.ndarray:
        from scipy import special  # here, not at the top: the Snakefile imports this module

        grid = np.linspace(*self.mass_range, 20001)
        pdf = grid ** (-self.spectrum_index) * special.expit(
            (grid - self.turn_on) / self.turn_on_width
        )
        cdf = np.concatenate([[0.0], np.cumsum(0.5 * (pdf[1:] + pdf[:-1]) * np.diff(grid))])
        return np.interp(rng.random(n), cdf / cdf[-1], grid)

    def background(self, n: int, rng: np.random.Generator) -> Events:
        from scipy import special  # here, not at the top: the Snakefile imports this module

        m = self.background_mjj(n, rng)
        z = rng.standard_normal((n, 4)) @ np.linalg.cholesky(BACKGROUND_COPULA).T
        u = np.clip(special.ndtr(z), 1e-9, 1 - 1e-9)
        mass_scale = (m / 3.5) ** JET_MASS_EXPONENT
        x = np.stack(
            [
                family(mean, sd).ppf(u[:, i]) * (mass_scale if scales else 1.0)
                for i, (family, mean, sd, scales) in enumerate(BACKGROUND_MARGINALS)
            ],
            axis=1,
        )
        return Events(m, x, np.zeros(n, dtype=np.int8))

    @staticmethod
    def background_log_prob(x: np.ndarray, m: np.ndarray) -> np.ndarray:
        """Return the exact log density log p_B(x | m) [N] of :meth:`background`'s features.

        The Gaussian copula's density times the marginals' (the jet masses' with the Jacobian
        1/s of their scale s = (m/3.5)^0.3). The learned background densities (sideband flows)
        can be checked against it: with it in their place, R-ANODE's w has no background
        mismodelling to absorb (``benchmarks/anomaly_ranode_w.py``).
        """
        from scipy import special  # here, not at the top: the Snakefile imports this module

        x, m = np.asarray(x, dtype=np.float64), np.asarray(m, dtype=np.float64)
        log_scale = JET_MASS_EXPONENT * np.log(m / 3.5)
        log_p = np.zeros(len(x))
        z = np.empty_like(x)
        for i, (family, mean, sd, scales) in enumerate(BACKGROUND_MARGINALS):
            dist = family(mean, sd)
            y = x[:, i] * np.exp(-log_scale) if scales else x[:, i]
            log_p += dist.logpdf(y) - (log_scale if scales else 0.0)
            # the upper tail through the survival function keeps its precision near u = 1
            z[:, i] = np.where(
                y < dist.median(), special.ndtri(dist.cdf(y)), -special.ndtri(dist.sf(y))
            )
        precision = np.linalg.inv(BACKGROUND_COPULA) - np.eye(4)
        _, log_det = np.linalg.slogdet(BACKGROUND_COPULA)
        return log_p - 0.5 * log_det - 0.5 * np.einsum("ni,ij,nj->n", z, precision, z)

    def signal(self, n: int, rng: np.random.Generator) -> Events:
        core = rng.random(n) < 0.7
        m = np.where(core, rng.normal(3.5, 0.12, n), rng.normal(3.3, 0.4, n))
        m = np.clip(m, self.mass_range[0], self.mass_range[1])
        m_y = rng.normal(0.1, 0.007, n)
        m_x = rng.normal(0.5, 0.035, n)
        # 30% of events: one of the two jets loses its resonance mass (QCD-like instead)
        lost = rng.random(n) >= 0.7
        which = rng.random(n) < 0.5
        qcd_mass = _gamma(0.15, 0.1).ppf(rng.random(n))
        m_y = np.where(lost & which, qcd_mass, m_y)
        m_x = np.where(lost & ~which, qcd_mass, m_x)
        tau_y = _beta(0.37, 0.14).ppf(rng.random(n))
        tau_x = _beta(0.21, 0.13).ppf(rng.random(n))
        light_is_y = m_y <= m_x
        m1, m2 = np.where(light_is_y, m_y, m_x), np.where(light_is_y, m_x, m_y)
        t1, t2 = np.where(light_is_y, tau_y, tau_x), np.where(light_is_y, tau_x, tau_y)
        x = np.stack([np.abs(m1), m2 - m1, t1, t2], axis=1)
        return Events(m, x, np.ones(n, dtype=np.int8))


def simulate_events(settings: Mapping, seed: int) -> dict[str, Events]:
    """Return the four event samples of the LHCO-like generator for ``anomaly.data`` settings."""
    gen = LHCOLikeGenerator()
    samples = {}
    plan = [
        ("data", settings["n-background"], settings["n-signal"]),
        ("extra_background", settings["n-extra-background"], 0),
        ("signal_train", 0, settings["n-train-signal"]),
        ("test", settings["n-test-background"], settings["n-test-signal"]),
    ]
    for name, n_bkg, n_sig in progress(plan, desc="generate events", unit="sample"):
        rng = numpy_rng(seed, "anomaly-data", name)
        parts = [gen.background(n_bkg, rng), gen.signal(n_sig, rng)]
        samples[name] = Events.concatenate(parts).shuffled(rng)
    return samples
