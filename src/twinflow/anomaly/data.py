"""Events for the anomaly search: the LHCO R&D loader, the LHCO-like generator, signal injection.

Every event has the resonant feature m = m_JJ and four auxiliary features, in TeV where a mass::

    x = [m_J1, m_J2 - m_J1, tau21_J1, tau21_J2]      (J1 = the lighter jet)

with tau21 = tau2 / (tau1 + 1e-5), and a truth label (1 signal, 0 background) used only for
the references (IAD, supervised) and for evaluation.

The stage :func:`prepare_events` writes one HDF5 file with four event samples:

- ``data``: background plus ``n-signal`` injected signal events: what the weakly supervised
  methods see;
- ``extra_background``: an independent background sample of the same size (the idealized
  anomaly detector, IAD, trains data against it; the supervised reference uses it as well);
- ``signal_train``: signal events for the supervised reference;
- ``test``: independent labelled signal and background for ROC/SIC curves.

Offline, these come from :class:`LHCOLikeGenerator`; with ``source: files`` from LHCO R&D files.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path

import h5py
import numpy as np

from twinflow.anomaly.events import Events
from twinflow.core.io import (
    atomic_path,
    read_hdf5,
    read_settings,
    verify_intermediate,
    write_checksum,
    write_provenance,
)
from twinflow.core.progress import progress
from twinflow.core.seeding import numpy_rng
from twinflow.core.settings import (
    ConfigError,
    require,
    require_choice,
    require_file,
    require_positive,
)

LHCO_COLUMNS = (
    "pxj1",
    "pyj1",
    "pzj1",
    "mj1",
    "tau1j1",
    "tau2j1",
    "tau3j1",
    "pxj2",
    "pyj2",
    "pzj2",
    "mj2",
    "tau1j2",
    "tau2j2",
    "tau3j2",
    "label",
)
FEATURE_NAMES = ("m_J1", "delta_m_J", "tau21_J1", "tau21_J2")
FEATURE_LABELS = (
    r"$m_{J_1}$ [TeV]",
    r"$\Delta m_J$ [TeV]",
    r"$\tau_{21}^{J_1}$",
    r"$\tau_{21}^{J_2}$",
)
SAMPLES = ("data", "extra_background", "signal_train", "test")
TAU_EPSILON = 1e-5  # tau21 = tau2 / (tau1 + 1e-5), as in the LHCO R&D papers


# ---------------------------------------------------------------------------------------------
# LHCO R&D files
# ---------------------------------------------------------------------------------------------


def _read_pandas_fixed(path: Path, key: str) -> dict[str, np.ndarray]:
    """Columns of a pandas ``to_hdf`` frame in 'fixed' format, read with h5py (no pytables)."""
    with read_hdf5(path, "LHCO file") as f:
        if key not in f:
            raise ConfigError(f"LHCO file {str(path)!r} has no key {key!r} (keys: {list(f)})")
        group = f[key]
        if "table" in group:  # 'table' format needs pandas + pytables
            import pandas as pd

            try:
                frame = pd.read_hdf(path, key)
            except ImportError as err:
                raise ConfigError(
                    f"LHCO file {str(path)!r} is in pandas' 'table' format, which needs "
                    f"PyTables ({err}): install it, or save the frame with format='fixed'"
                ) from None
            return {str(c): frame[c].to_numpy() for c in frame.columns}
        columns: dict[str, np.ndarray] = {}
        for block in range(int(group.attrs.get("nblocks", 0))):
            names = [
                n.decode() if isinstance(n, bytes) else str(n)
                for n in group[f"block{block}_items"][:]
            ]
            values = group[f"block{block}_values"][:]  # [N, n_columns_in_block]
            for i, name in enumerate(names):
                columns[name] = values[:, i]
        return columns


def read_lhco(path: str | Path, key: str = "df") -> Events:
    """Return the events of an LHCO R&D feature file (pandas HDF, GeV) in TeV.

    m_JJ is the invariant mass of the two jets' four-vectors; jets are ordered by mass so that
    J1 is the lighter; tau21 = tau2 / (tau1 + 1e-5).
    """
    path = require_file("anomaly.data.files", path)
    columns = _read_pandas_fixed(path, key)
    missing = [c for c in LHCO_COLUMNS if c not in columns]
    if missing:
        raise ConfigError(
            f"LHCO file {str(path)!r} lacks the column(s) {missing}; expected {list(LHCO_COLUMNS)}"
        )
    c = {name: np.asarray(columns[name], dtype=np.float64) for name in LHCO_COLUMNS}
    p1 = np.stack([c["pxj1"], c["pyj1"], c["pzj1"]], axis=1)
    p2 = np.stack([c["pxj2"], c["pyj2"], c["pzj2"]], axis=1)
    e1 = np.sqrt(np.sum(p1**2, axis=1) + c["mj1"] ** 2)
    e2 = np.sqrt(np.sum(p2**2, axis=1) + c["mj2"] ** 2)
    mjj = np.sqrt(np.maximum((e1 + e2) ** 2 - np.sum((p1 + p2) ** 2, axis=1), 0.0))
    tau21_1 = c["tau2j1"] / (c["tau1j1"] + TAU_EPSILON)
    tau21_2 = c["tau2j2"] / (c["tau1j2"] + TAU_EPSILON)
    swap = c["mj1"] > c["mj2"]
    m_light = np.where(swap, c["mj2"], c["mj1"])
    m_heavy = np.where(swap, c["mj1"], c["mj2"])
    tau_light = np.where(swap, tau21_2, tau21_1)
    tau_heavy = np.where(swap, tau21_1, tau21_2)
    x = np.stack([m_light / 1000, (m_heavy - m_light) / 1000, tau_light, tau_heavy], axis=1)
    return Events(mjj / 1000, x, c["label"].astype(np.int8))


# ---------------------------------------------------------------------------------------------
# LHCO-like generator
# ---------------------------------------------------------------------------------------------


def _gamma(mean: float, sd: float):
    """The gamma distribution (scipy, frozen) with this mean and standard deviation."""
    from scipy import stats  # here, not at the top: the Snakefile imports this module

    return stats.gamma((mean / sd) ** 2, scale=sd**2 / mean)


def _beta(mean: float, sd: float):
    """The beta distribution (scipy, frozen) with this mean and standard deviation."""
    from scipy import stats  # here, not at the top: the Snakefile imports this module

    total = mean * (1 - mean) / sd**2 - 1
    return stats.beta(mean * total, (1 - mean) * total)


def _gamma_quantile(u: np.ndarray, mean: float, sd: float) -> np.ndarray:
    return _gamma(mean, sd).ppf(u)


def _beta_quantile(u: np.ndarray, mean: float, sd: float) -> np.ndarray:
    return _beta(mean, sd).ppf(u)


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
        qcd_mass = _gamma_quantile(rng.random(n), 0.15, 0.1)
        m_y = np.where(lost & which, qcd_mass, m_y)
        m_x = np.where(lost & ~which, qcd_mass, m_x)
        tau_y = _beta_quantile(rng.random(n), 0.37, 0.14)
        tau_x = _beta_quantile(rng.random(n), 0.21, 0.13)
        light_is_y = m_y <= m_x
        m1, m2 = np.where(light_is_y, m_y, m_x), np.where(light_is_y, m_x, m_y)
        t1, t2 = np.where(light_is_y, tau_y, tau_x), np.where(light_is_y, tau_x, tau_y)
        x = np.stack([np.abs(m1), m2 - m1, t1, t2], axis=1)
        return Events(m, x, np.ones(n, dtype=np.int8))


# ---------------------------------------------------------------------------------------------
# The stage
# ---------------------------------------------------------------------------------------------


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


def _from_files(settings: Mapping, seed: int) -> dict[str, Events]:
    """Split a labelled LHCO file into data (with n-signal injected), test and signal_train."""
    rng = numpy_rng(seed, "anomaly-data", "files")
    events = read_lhco(settings["files"]["data"]).shuffled(rng)
    bkg, sig = events.select(events.label == 0), events.select(events.label == 1)
    n_test_bkg = int(round(settings["test-fraction"] * len(bkg)))
    n_sig = settings["n-signal"]
    require(
        n_sig <= len(sig) // 2,
        "anomaly.data.n-signal",
        n_sig,
        f"the file holds {len(sig)} signal events; inject at most half of them",
    )
    rest = sig.select(np.arange(n_sig, len(sig)))
    n_test_sig = min(settings["n-test-signal"], len(rest) // 2)
    samples = {
        "data": Events.concatenate(
            [bkg.select(np.arange(n_test_bkg, len(bkg))), sig.select(np.arange(n_sig))]
        ).shuffled(rng),
        "test": Events.concatenate(
            [bkg.select(np.arange(n_test_bkg)), rest.select(np.arange(n_test_sig))]
        ).shuffled(rng),
        "signal_train": rest.select(np.arange(n_test_sig, len(rest))),
    }
    extra = settings["files"].get("extra-background")
    if extra:
        extra_events = read_lhco(extra)
        samples["extra_background"] = extra_events.select(extra_events.label == 0)
    else:  # no extra QCD file: IAD and supervised use the held-out half of the test background
        half = n_test_bkg // 2
        test_bkg = bkg.select(np.arange(n_test_bkg))
        samples["extra_background"] = test_bkg.select(np.arange(half))
        samples["test"] = Events.concatenate(
            [test_bkg.select(np.arange(half, n_test_bkg)), rest.select(np.arange(n_test_sig))]
        ).shuffled(rng)
    return samples


def prepare_events(settings: Mapping, out: str | Path) -> dict[str, Events]:
    """Generate or load the event samples and write them to ``out`` (HDF5), atomically.

    ``settings``: ``{"seed": int, "data": <anomaly.data section>}``.
    """
    data_settings = settings["data"]
    check_data_settings(data_settings)
    seed = settings["seed"]
    samples = (
        simulate_events(data_settings, seed)
        if data_settings["source"] == "simulated"
        else _from_files(data_settings, seed)
    )
    with atomic_path(out) as tmp, h5py.File(tmp, "w") as f:
        write_provenance(f, settings, feature_names=list(FEATURE_NAMES))
        for name, ev in samples.items():
            g = f.create_group(name)
            g.create_dataset("m", data=ev.m.astype(np.float32))
            g.create_dataset("x", data=ev.x.astype(np.float32))
            g.create_dataset("label", data=ev.label.astype(np.int8))
            g.attrs["n_signal"] = int(ev.label.sum())
            g.attrs["n_background"] = int(len(ev) - ev.label.sum())
        write_checksum(f)
    return samples


def load_events(path: str | Path) -> tuple[dict[str, Events], dict]:
    """Return the samples written by :func:`prepare_events` and the settings that made them."""
    verify_intermediate(path, "anomaly events", SAMPLES)
    with read_hdf5(path, "anomaly events") as f:
        samples = {
            s: Events(
                f[s]["m"][:].astype(np.float64), f[s]["x"][:].astype(np.float64), f[s]["label"][:]
            )
            for s in SAMPLES
        }
        return samples, read_settings(f)


# ---------------------------------------------------------------------------------------------
# Signal regions
# ---------------------------------------------------------------------------------------------


SOURCES = ("simulated", "files")


def check_data_settings(settings: Mapping) -> None:
    """Raise :class:`ConfigError` for invalid ``anomaly.data`` settings."""
    require_choice("anomaly.data.source", settings["source"], SOURCES)
    for key in (
        "n-background",
        "n-extra-background",
        "n-test-background",
        "n-test-signal",
        "n-train-signal",
    ):
        value = settings[key]
        require(
            isinstance(value, int) and value > 0,
            f"anomaly.data.{key}",
            value,
            "expected an integer > 0",
        )
    n_sig = settings["n-signal"]
    require(
        isinstance(n_sig, int) and n_sig >= 0,
        "anomaly.data.n-signal",
        n_sig,
        "expected an integer >= 0",
    )
    if settings["source"] == "files":
        files = settings["files"]
        require(
            bool(files.get("data")),
            "anomaly.data.files.data",
            files.get("data"),
            "give the LHCO R&D file (with a label column) when source is 'files'",
        )
        require_file("anomaly.data.files.data", files["data"])
        if files.get("extra-background"):
            require_file("anomaly.data.files.extra-background", files["extra-background"])
        require_positive("anomaly.data.test-fraction", settings["test-fraction"])
        require(
            settings["test-fraction"] < 1,
            "anomaly.data.test-fraction",
            settings["test-fraction"],
            "expected a fraction in (0, 1)",
        )
