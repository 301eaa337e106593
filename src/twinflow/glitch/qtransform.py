"""Whitened Q-transform images of fixed size, batched, and the images dataset.

The transform is gwpy's multi-Q transform (``TimeSeries.q_transform``), computed for a whole
batch of series at once: the tiling (Q planes, rows, bi-square windows, padding) comes from
``gwpy.signal.qtransform.QTiling`` itself; the FFT normalisation, median/mean normalisation per
row, the choice of the plane with the loudest tile inside the output window, the cubic-spline
interpolation onto the output time grid and the spline interpolation onto log-spaced
frequencies all follow gwpy, vectorised over the batch with numpy and scipy. Whitening divides
the spectrum by the noise ASD stored with the data (exact for simulated data; an off-source
estimate for detector data).
``tests/glitch/test_qtransform.py`` checks images against gwpy's ``q_transform`` itself.

Images are ``[S, S]``: axis 0 is frequency (log-spaced, increasing), axis 1 is time; values
are normalised tile energies. gwpy divides each row by its median (``norm: median``, noise
pixels then have mean 1/ln 2) or mean; ``norm: psd`` divides by the energy whitened Gaussian
noise has in expectation, known exactly here, so noise pixels are exponential with mean 1 and
a loud glitch does not lower its own row's scale.

The images stage turns the dataset shards into normalised images for training:
aux ``[N, K, S, S]``, strain ``[N, S, S]`` scaled to [0, 1] by min-max statistics of the
training split only (of the energies, or of ``log1p`` of them with ``scaling: log``, which
keeps both noise and loud glitches visible), plus the strain glitch-only and chirp-only energies (in the same
normalised-energy units as the strain image, same plane and row medians) used by the metrics.
Each shard carries the PSDs that whiten it (the configured curve for simulated data, the
off-source estimate for detector data, whose glitch-only and chirp-only energies are unknown:
they are NaN and the file says ``truth = False``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path

import h5py
import numpy as np

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
    require_positive,
)
from twinflow.glitch.qplane import transform_for

NORMS = ("median", "mean", "psd")
SCALINGS = ("linear", "log")
SPLITS = ("train", "validation", "test")
#: Per-sample truth carried from the shards into the images file.
LABELS = (
    "has_glitch",
    "glitch_type",
    "glitch_channel",
    "glitch_time",
    "glitch_snr",
    "glitch_frequency",
    "glitch_q",
    "has_chirp",
    "chirp_time",
    "chirp_snr",
    "chirp_mass",
)
#: Datasets every images file holds.
IMAGE_DATASETS = ("aux", "strain", "split", "aux_min", "aux_max", "strain_min", "strain_max")


# --------------------------------------------------------------------------------------------
# Settings


def q_maximum_frequency(sampling_frequency: float, q_min: float) -> float:
    """Return gwpy's highest usable Q-transform frequency fs / 2 / (1 + sqrt(11) / Q_min): the
    top tile of the lowest-Q plane must stay below the Nyquist frequency."""
    return sampling_frequency / 2 / (1 + np.sqrt(11) / q_min)


def check_qtransform_settings(
    settings: Mapping, sampling_frequency: float, duration: float
) -> None:
    """Raise :class:`ConfigError` for the first invalid Q-transform setting."""
    size = settings["image-size"]
    require(
        isinstance(size, int) and size >= 8,
        "image-size",
        size,
        "an integer >= 8 (pixels per side)",
    )
    qrange, frange = settings["qrange"], settings["frange"]
    for key, value in (("qrange", qrange), ("frange", frange)):
        ok = isinstance(value, (list, tuple)) and len(value) == 2 and 0 < value[0] < value[1]
        require(ok, key, value, "a pair [low, high] with 0 < low < high")
    require(
        qrange[0] >= np.sqrt(11),
        "qrange",
        qrange,
        f"Q >= sqrt(11) = {np.sqrt(11):.3f} (gwpy's tiles need it)",
    )
    nyquist = sampling_frequency / 2
    if frange[1] > nyquist:
        raise ConfigError(
            f"frange = {frange!r} Hz: the upper frequency exceeds the Nyquist frequency "
            f"{nyquist:g} Hz of {sampling_frequency:g} Hz data"
        )
    fmax = q_maximum_frequency(sampling_frequency, qrange[0])
    if frange[1] > fmax:
        raise ConfigError(
            f"frange = {frange!r} Hz: the upper frequency is above {fmax:.1f} Hz, the highest a Q-transform "
            f"with Q >= {qrange[0]:g} can reach below the Nyquist frequency {nyquist:g} Hz "
            "(fs/2 / (1 + sqrt(11)/Q_min)): lower frange or raise sampling-frequency"
        )
    window = settings["window"]
    require_positive("window", window)
    require(
        window <= duration / 2,
        "window",
        window,
        f"an image window of at most half the sample duration ({duration / 2:g} s)",
    )
    require(
        isinstance(settings["mismatch"], (int, float)) and 0 < settings["mismatch"] < 1,
        "mismatch",
        settings["mismatch"],
        "a number in (0, 1)",
    )
    require_choice("norm", settings["norm"], NORMS)
    require_choice("scaling", settings["scaling"], SCALINGS)
    split = settings["split"]
    ok = (
        isinstance(split, (list, tuple))
        and len(split) == 3
        and all(isinstance(v, (int, float)) and v > 0 for v in split)
        and abs(sum(split) - 1) < 1e-6
    )
    require(ok, "split", split, "three fractions > 0 (train, validation, test) that sum to 1")
    require(
        isinstance(settings["batch-size"], int) and settings["batch-size"] >= 1,
        "batch-size",
        settings["batch-size"],
        "an integer >= 1",
    )


# --------------------------------------------------------------------------------------------
# The batched transform


# --------------------------------------------------------------------------------------------
# Splits and normalisation


def split_indices(n: int, fractions: Sequence[float], seed: int) -> np.ndarray:
    """Return the split label (0 train, 1 validation, 2 test) of each of ``n`` samples, by a
    seeded permutation; every split gets at least one sample when n >= 3."""
    order = numpy_rng(seed, "glitch-split").permutation(n)
    n_val = max(1, int(round(fractions[1] * n))) if n >= 3 else 0
    n_test = max(1, int(round(fractions[2] * n))) if n >= 3 else 0
    labels = np.zeros(n, dtype=np.int8)
    labels[order[n - n_val - n_test : n - n_test]] = 1
    labels[order[n - n_test :]] = 2
    return labels


@dataclasses.dataclass
class MinMax:
    """Per-channel min-max scaling to [0, 1], after ``log1p`` when ``log``; the statistics come
    from the training split only and are applied unchanged to validation and test (whose values
    may then fall outside [0, 1])."""

    minimum: np.ndarray  # [C], of the (log1p of the) energies
    maximum: np.ndarray  # [C]
    log: bool = False

    @classmethod
    def fit(cls, images: np.ndarray, log: bool = False) -> MinMax:
        """Fit on training images [N, C, S, S] (tile energies)."""
        values = np.log1p(np.maximum(images, 0)) if log else images
        return cls(
            values.min(axis=(0, 2, 3)).astype(np.float64),
            values.max(axis=(0, 2, 3)).astype(np.float64),
            log,
        )

    def _shape(self, x: np.ndarray, values: np.ndarray) -> np.ndarray:
        return values.reshape((1, -1) + (1,) * (x.ndim - 2))

    def _span(self) -> np.ndarray:
        return np.where(self.maximum > self.minimum, self.maximum - self.minimum, 1.0)

    def transform(self, images: np.ndarray) -> np.ndarray:
        """Return energies [N, C, ...] scaled to the training split's [0, 1]."""
        values = np.log1p(np.maximum(images, 0)) if self.log else images
        return (
            (values - self._shape(values, self.minimum)) / self._shape(values, self._span())
        ).astype(np.float32)

    def inverse(self, images: np.ndarray) -> np.ndarray:
        """Return scaled images [N, C, ...] as tile energies."""
        values = images * self._shape(images, self._span()) + self._shape(images, self.minimum)
        return np.expm1(values) if self.log else values


# --------------------------------------------------------------------------------------------
# The images stage


def build_images(
    data_settings: Mapping,
    settings: Mapping,
    shards: Sequence[str | Path],
    out: str | Path,
    log=print,
) -> None:
    """Q-transform every sample of ``shards`` and write the normalised, split images to ``out``."""
    from twinflow.glitch.data import SHARD_DATASETS, check_data_settings, read_shard

    check_data_settings(data_settings, settings["frange"])
    fs, duration = data_settings["sampling-frequency"], data_settings["duration"]
    check_qtransform_settings(settings, fs, duration)
    n_shards = 1 if data_settings["source"] == "files" else data_settings["n-shards"]
    require(
        len(shards) == n_shards,
        "shards",
        len(shards),
        f"one file per shard ({n_shards})",
    )
    for path in shards:  # every shard intact before any work
        verify_intermediate(path, "glitch shard", SHARD_DATASETS)
    qt = transform_for(settings, fs, duration)
    k = data_settings["n-auxiliary"]
    batch_size = settings["batch-size"]

    parts: dict[str, list[np.ndarray]] = {}
    total = 0
    for path in shards:
        with read_hdf5(path, "glitch shard") as f:
            total += len(f["strain"])
    bar = progress(total=total, desc="Q-transform images", unit="sample")
    truth = True
    for path in shards:
        arrays, _ = read_shard(path)
        # Whitening with the shard's own PSDs: the configured curve for simulated data, the
        # off-source estimate for detector data.
        asd, aux_asd = np.sqrt(arrays["strain_psd"]), np.sqrt(arrays["aux_psd"])
        truth = truth and "glitch_strain" in arrays
        for start in range(0, len(arrays["strain"]), batch_size):
            sl = slice(start, start + batch_size)
            if truth:
                strain, (glitch_only, chirp_only) = qt(
                    arrays["strain"][sl],
                    asd,
                    components=(arrays["glitch_strain"][sl], arrays["chirp_strain"][sl]),
                )
            else:  # detector data: the glitch alone and the chirp alone are unknown
                strain = qt(arrays["strain"][sl], asd)
                glitch_only = chirp_only = np.full_like(strain, np.nan)
            aux = np.stack([qt(arrays["aux"][sl, c], aux_asd[c]) for c in range(k)], axis=1)
            for name, value in (
                ("strain", strain),
                ("aux", aux),
                ("glitch_energy", glitch_only),
                ("chirp_energy", chirp_only),
            ):
                parts.setdefault(name, []).append(value)
            bar.update(len(strain))
        for name in (*LABELS, "gps_start"):
            parts.setdefault(name, []).append(arrays[name])
    bar.close()
    data = {name: np.concatenate(values) for name, values in parts.items()}
    split = split_indices(len(data["strain"]), settings["split"], settings["seed"])
    train = split == 0
    log_scale = settings["scaling"] == "log"
    aux_scale = MinMax.fit(data["aux"][train], log_scale)
    strain_scale = MinMax.fit(data["strain"][train][:, None], log_scale)

    with atomic_path(out) as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("aux", data=aux_scale.transform(data["aux"]))
        f.create_dataset("strain", data=strain_scale.transform(data["strain"][:, None])[:, 0])
        for name, value in data.items():
            if name not in ("aux", "strain"):
                f.create_dataset(name, data=value)
        f.create_dataset("split", data=split)
        f.create_dataset("frequencies", data=qt.frequencies)
        f.create_dataset("times", data=qt.times - duration / 2)
        for name, scale in (("aux", aux_scale), ("strain", strain_scale)):
            f.create_dataset(f"{name}_min", data=scale.minimum)
            f.create_dataset(f"{name}_max", data=scale.maximum)
        write_provenance(
            f,
            settings,
            data_settings=dict(data_settings),
            noise_energy_mean=noise_energy_mean(settings["norm"]),
            log_scaling=log_scale,
            truth=truth,
        )
        write_checksum(f)
    counts = np.bincount(split, minlength=3)
    log(
        f"wrote {len(split)} image sets ({', '.join(f'{c} {s}' for c, s in zip(counts, SPLITS))}) of size "
        f"{qt.size}x{qt.size} to {out}"
    )


def noise_energy_mean(norm: str) -> float:
    """Return the mean normalised energy of a noise-only tile: energies of Gaussian noise are
    exponential, so the mean is 1/ln 2 under median normalisation and 1 under mean."""
    return 1 / np.log(2) if norm == "median" else 1.0  # "mean" and "psd": mean 1


@dataclasses.dataclass
class ImageSet:
    """The images file written by :func:`build_images`, one split or all of it."""

    aux: np.ndarray  # [N, K, S, S], normalised
    strain: np.ndarray  # [N, S, S], normalised
    labels: dict[str, np.ndarray]
    aux_scale: MinMax
    strain_scale: MinMax
    frequencies: np.ndarray
    times: np.ndarray
    settings: dict
    truth: bool = True  # False for detector data: glitch_energy and chirp_energy are unknown

    def strain_energy(self, images: np.ndarray) -> np.ndarray:
        """Return normalised strain images [N, S, S] in tile-energy units."""
        return self.strain_scale.inverse(images[:, None])[:, 0]


def load_images(path: str | Path, split: str | None = None) -> ImageSet:
    """Return the images of ``split`` (train, validation, test; None: all)."""
    verify_intermediate(path, "glitch images", IMAGE_DATASETS)
    with read_hdf5(path, "glitch images") as f:
        which = slice(None) if split is None else f["split"][()] == SPLITS.index(split)
        labels = {name: f[name][()][which] for name in (*LABELS, "glitch_energy", "chirp_energy")}
        return ImageSet(
            aux=f["aux"][()][which],
            strain=f["strain"][()][which],
            labels=labels,
            aux_scale=MinMax(f["aux_min"][()], f["aux_max"][()], bool(f.attrs["log_scaling"])),
            strain_scale=MinMax(
                f["strain_min"][()], f["strain_max"][()], bool(f.attrs["log_scaling"])
            ),
            frequencies=f["frequencies"][()],
            times=f["times"][()],
            settings=read_settings(f),
            truth=bool(f.attrs.get("truth", True)),
        )
