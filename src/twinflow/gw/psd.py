"""PSD estimation: per-detector banks of Welch PSD estimates.

A PSD bank holds N Welch estimates of one detector's noise PSD on the uniform grid
``f = 0, 1/T, ..., f_s/2`` (T = the analysis duration, which is also the Welch fftlength), one
per stretch of ``psd-length`` seconds of strain. Training draws a PSD per sample from it, so
the network sees the spread of noise levels a real observing run has.

Strain comes either from real files (GWOSC HDF5, GWF or ASCII, read with gwpy) or, offline,
from an O3-like simulator: coloured Gaussian noise from a published O3 sensitivity curve,
with stretch-to-stretch variation of the broadband level, a slow drift of the spectral shape
and randomly varying line heights.

Settings (the ``gw.psd`` section, resolved for one detector by the workflow) use bilby_pipe's
names: ``duration``, ``sampling-frequency``, ``maximum-frequency``; see config/README.md.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path

import h5py
import numpy as np

from twinflow.core.io import (
    atomic_path,
    read_hdf5,
    read_settings,
    require_datasets,
    verify_checksum,
    write_checksum,
    write_provenance,
)
from twinflow.core.noise import LALSIM_CURVES, source_psd
from twinflow.core.progress import progress
from twinflow.core.settings import (
    ConfigError,
    require,
    require_choice,
    require_file,
    require_memory,
    require_nyquist,
    require_positive,
)
from twinflow.gw.detectors import KNOWN_DETECTORS
from twinflow.gw.strain_sources import (
    load_strain_stretches,
    simulate_strain_stretches,
)

WINDOWS = ("hann", "hamming", "blackman", "tukey", "boxcar")
AVERAGES = ("median", "mean")
STRAIN_SUFFIXES = (".hdf5", ".h5", ".hdf", ".gwf", ".txt", ".dat", ".csv")


@dataclasses.dataclass
class PSDBank:
    """N PSD estimates of one detector on a uniform frequency grid."""

    detector: str
    frequencies: np.ndarray  # [n_f], Hz
    psd: np.ndarray  # [N, n_f], 1/Hz (one-sided)
    settings: dict

    @property
    def delta_f(self) -> float:
        return float(self.frequencies[1] - self.frequencies[0])

    @property
    def asd(self) -> np.ndarray:
        return np.sqrt(self.psd)


def load_psd_bank(path: str | Path) -> PSDBank:
    """Return the PSD bank stored in ``path`` by :func:`estimate_psd_bank`."""
    with read_hdf5(path, "PSD bank") as f:
        require_datasets(f, "PSD bank", ("psd", "frequencies"))
        verify_checksum(f, "PSD bank")
        return PSDBank(
            detector=str(f.attrs["detector"]),
            frequencies=f["frequencies"][:],
            psd=f["psd"][:],
            settings=read_settings(f),
        )


# --------------------------------------------------------------------------------------------
# Settings


def check_settings(settings: Mapping) -> None:
    """Raise :class:`ConfigError` for the first invalid setting, before any work starts."""
    detector = settings["detector"]
    require_choice("detector", detector, KNOWN_DETECTORS)
    for key in ("duration", "sampling-frequency", "psd-length"):
        require_positive(key, settings[key])
    fs, duration = settings["sampling-frequency"], settings["duration"]
    require_nyquist("maximum-frequency", settings["maximum-frequency"], fs)
    require(
        float(duration * fs).is_integer(),
        "duration",
        duration,
        f"duration x sampling-frequency must be a whole number of samples (fs = {fs} Hz)",
    )
    # Simulated: PSD variations [n-stretches, n/2+1] float64 plus ~6 work arrays of one
    # stretch (noise spectrum, its inverse FFT, Welch segments); files: one stretch at a time.
    n = settings["psd-length"] * fs
    stretches = settings["n-stretches"] if settings["source"] == "simulated" else 0
    require_memory(
        "psd-length",
        settings["psd-length"],
        8.0 * (stretches * (n / 2 + 1) + 6 * n),
        "the strain stretches and their PSD variations",
    )
    if duration > settings["psd-length"]:
        raise ConfigError(
            f"psd-length = {settings['psd-length']!r} s is shorter than the Welch fftlength "
            f"(duration = {duration!r} s): each stretch must hold at least one segment"
        )
    overlap = settings["overlap"]
    require(
        isinstance(overlap, (int, float)) and 0 <= overlap < 1,
        "overlap",
        overlap,
        "a fraction of the fftlength in [0, 1)",
    )
    require_choice("window", settings["window"], WINDOWS)
    require_choice("average", settings["average"], AVERAGES)
    require_choice("source", settings["source"], ("simulated", "files"))
    if settings["source"] == "simulated":
        require(
            isinstance(settings["n-stretches"], int) and settings["n-stretches"] >= 1,
            "n-stretches",
            settings["n-stretches"],
            "an integer >= 1",
        )
        sim = settings["simulation"]
        curve_key = f"simulation.curves.{detector}"
        curve = sim.get("curve")
        require(
            curve is not None,
            curve_key,
            curve,
            f"a curve for {detector}: one of {list(LALSIM_CURVES)} or an ASD text file",
        )
        if curve not in LALSIM_CURVES:
            if not Path(curve).is_file():
                raise ConfigError(
                    f"{curve_key} = {curve!r} is neither a known curve {list(LALSIM_CURVES)} "
                    "nor an existing ASD text file"
                )
        for key in (
            "scale-sigma",
            "drift-sigma",
            "line-height-sigma",
            "line-width",
            "line-height",
        ):
            require_positive(f"simulation.{key}", sim[key], allow_zero=True)
        rho = sim["drift-correlation"]
        require(0 <= rho < 1, "simulation.drift-correlation", rho, "a number in [0, 1)")
    else:
        files = settings["files"].get("strain") or []
        require(
            len(files) > 0,
            f"files.strain.{detector}",
            files,
            "a list of strain files for this detector",
        )
        for path in files:
            require_file(f"files.strain.{detector}", path)
            suffix = Path(path).suffix.lower()
            require(
                suffix in STRAIN_SUFFIXES,
                f"files.strain.{detector}",
                path,
                f"a strain file with suffix in {list(STRAIN_SUFFIXES)}",
            )
            if suffix == ".gwf":
                require(
                    bool(settings["files"].get("channel")),
                    f"files.channel-dict.{detector}",
                    settings["files"].get("channel"),
                    "a channel name, needed to read GWF files",
                )


# --------------------------------------------------------------------------------------------
# Welch estimation and the bank


def welch_psd(strain: np.ndarray, settings: Mapping) -> tuple[np.ndarray, np.ndarray]:
    """Return (frequencies, one-sided PSD) of ``strain`` by Welch's method.

    fftlength = ``duration``; overlap as a fraction of it; ``average`` median (bias-corrected
    as in scipy and gwpy) or mean.
    """
    fs = settings["sampling-frequency"]
    nperseg = int(round(settings["duration"] * fs))
    import scipy.signal  # here: importing it costs ~1 s, and the Snakefile imports this module

    return scipy.signal.welch(
        strain,
        fs=fs,
        window=settings["window"],
        nperseg=nperseg,
        noverlap=int(round(settings["overlap"] * nperseg)),
        average=settings["average"],
        scaling="density",
        axis=-1,
    )


def estimate_psd_bank(
    settings: Mapping, out: str | Path, plot: str | Path | None = None, log=print
) -> PSDBank:
    """Estimate a PSD bank for one detector and write it (and optionally its plot).

    The output HDF5 file holds ``frequencies`` [n_f], ``psd`` [N, n_f] and, for simulated
    strain, ``source_psd`` [n_f] (the curve on the same grid, before variations); its
    attributes hold the detector, the source and the settings.
    """
    check_settings(settings)
    detector = settings["detector"]
    if settings["source"] == "simulated":
        stretches = simulate_strain_stretches(settings)
        total = settings["n-stretches"]
        source = f"simulated:{settings['simulation']['curve']}"
        start_times = None
    else:
        loaded = load_strain_stretches(settings, log=log)
        start_times = np.array([t for t, _ in loaded])
        stretches = ((i, x, None) for i, (_, x) in enumerate(loaded))
        total = len(loaded)
        source = "files:" + json.dumps([str(p) for p in settings["files"]["strain"]])

    estimates = []
    for _, strain, _ in progress(
        stretches, desc=f"Welch PSD {detector}", total=total, unit="stretch"
    ):
        frequencies, psd = welch_psd(strain, settings)
        estimates.append(psd)
    bank = PSDBank(detector, frequencies, np.stack(estimates), dict(settings))

    source_curve = None
    if settings["source"] == "simulated":
        sim = settings["simulation"]
        source_curve = source_psd(sim["curve"], frequencies, sim["low-frequency-cutoff"])

    with atomic_path(out) as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("frequencies", data=bank.frequencies)
        f.create_dataset("psd", data=bank.psd)
        if source_curve is not None:
            f.create_dataset("source_psd", data=source_curve)
        if start_times is not None:
            f.create_dataset("stretch_gps_start", data=start_times)
        write_provenance(
            f,
            settings,
            detector=detector,
            source=source,
            duration=settings["duration"],
            sampling_frequency=settings["sampling-frequency"],
            delta_f=bank.delta_f,
            n_stretches=len(bank.psd),
        )
        write_checksum(f)
    log(f"{detector}: wrote {len(bank.psd)} PSD estimates on {len(frequencies)} bins to {out}")
    if plot is not None:
        plot_psd_bank(bank, plot, source_curve=source_curve, source_label=source.split(":")[0])
    return bank


def plot_psd_bank(
    bank: PSDBank, path: str | Path, source_curve: np.ndarray | None = None, source_label: str = ""
) -> None:
    """Plot the bank's ASD percentiles (5-95 %, 25-75 %, median) against the source curve."""
    f = bank.frequencies
    band = f >= max(5.0, f[1])
    asd = bank.asd[:, band]
    from twinflow.core.plotting import figure, save_figure

    fig, ax = figure(figsize=(6.5, 4))
    p5, p25, p50, p75, p95 = np.percentile(asd, [5, 25, 50, 75, 95], axis=0)
    ax.fill_between(f[band], p5, p95, alpha=0.25, color="C0", lw=0, label="bank 5-95 %")
    ax.fill_between(f[band], p25, p75, alpha=0.45, color="C0", lw=0, label="bank 25-75 %")
    ax.loglog(f[band], p50, color="C0", lw=1, label=f"bank median (N = {len(bank.psd)})")
    if source_curve is not None:
        ax.loglog(
            f[band],
            np.sqrt(source_curve[band]),
            color="k",
            lw=1,
            ls="--",
            label=f"source curve ({bank.settings['simulation']['curve']})",
        )
    ax.set_xlabel("frequency [Hz]")
    ax.set_ylabel(r"ASD [1/$\sqrt{\mathrm{Hz}}$]")
    ax.set_title(f"{bank.detector} PSD bank ({source_label}, T = {bank.settings['duration']} s)")
    ax.set_xlim(f[band][0], f[-1])
    ax.legend(loc="upper right", fontsize=8)
    save_figure(fig, path)
