"""The batched Q-transform: gwpy's tiling of the time-frequency plane (Chatterji's Q-planes and
rows), evaluated for many equal-length whitened series at once with FFTs and interpolated onto
fixed image grids.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np
import scipy.fft


@dataclasses.dataclass
class _Row:
    frequency: float
    indices: np.ndarray  # rfft bins of the tile window
    window: np.ndarray  # bi-square window
    padding: tuple[int, int]
    ntiles: int


@dataclasses.dataclass
class _Plane:
    q: float
    frequencies: np.ndarray
    frange: tuple[float, float]
    rows: list[_Row]
    frequency_matrix: np.ndarray | None = None


class QTransform:
    """Batched gwpy multi-Q transform onto a fixed ``[S, S]`` grid.

    ``duration`` and ``sampling_frequency`` describe the input series; ``outseg`` is the
    ``(start, stop)`` window of the image in seconds from the series start; the plane is chosen
    by its loudest tile inside ``outseg`` (gwpy's ``gps``/``search``).
    """

    def __init__(
        self,
        duration: float,
        sampling_frequency: float,
        *,
        image_size: int,
        qrange: Sequence[float],
        frange: Sequence[float],
        outseg: tuple[float, float],
        mismatch: float = 0.2,
        norm: str = "median",
    ):
        from gwpy.signal.qtransform import QTiling

        self.duration, self.fs, self.size = (
            float(duration),
            float(sampling_frequency),
            int(image_size),
        )
        self.n = int(round(duration * sampling_frequency))
        self.norm, self.outseg = norm, (float(outseg[0]), float(outseg[1]))
        tiling = QTiling(
            self.duration, self.fs, qrange=tuple(qrange), frange=tuple(frange), mismatch=mismatch
        )
        self.planes = []
        for plane in tiling:
            rows = [
                _Row(
                    row.frequency,
                    row.get_data_indices(),
                    row.get_window(),
                    row.padding,
                    row.ntiles,
                )
                for row in plane
            ]
            self.planes.append(
                _Plane(plane.q, np.asarray(plane.frequencies), tuple(plane.frange), rows)
            )
        tres = (self.outseg[1] - self.outseg[0]) / self.size
        self.times = self.outseg[0] + tres * np.arange(
            self.size
        )  # as gwpy's arange(start, stop, tres)
        self.frequencies = np.geomspace(tiling.frange[0], tiling.frange[1], num=self.size)
        self._time_matrices: dict[int, np.ndarray] = {}
        for plane in self.planes:
            plane.frequency_matrix = self._frequency_matrix(plane)

    def whitened_fft(self, data: np.ndarray, asd: np.ndarray | None) -> np.ndarray:
        """Return gwpy's one-sided FFT (rfft / n, doubled above DC) of the whitened ``data``."""
        spectrum = scipy.fft.rfft(np.asarray(data, dtype=float), axis=-1)
        if asd is not None:
            spectrum = spectrum / asd
            spectrum[..., 0] = 0.0
        spectrum /= self.n
        spectrum[..., 1:] *= 2.0
        return spectrum

    def _row_series(self, fseries: np.ndarray, row: _Row) -> np.ndarray:
        """Return the complex tile series [B, ntiles] of one row."""
        windowed = fseries[:, row.indices] * row.window
        padded = np.pad(windowed, ((0, 0), row.padding))
        return scipy.fft.ifft(scipy.fft.ifftshift(padded, axes=-1), axis=-1)

    def _normalise(self, energy: np.ndarray, row: _Row) -> np.ndarray:
        """Return the energy scale of a row: gwpy's median or mean over the row, or (``psd``)
        the expected energy of whitened Gaussian noise, 2 fs / (n ntiles^2) sum(window^2): with
        an exact PSD, noise energies are then exponential with mean 1 whatever the glitch."""
        if self.norm == "median":
            return np.median(energy, axis=-1, keepdims=True)
        if self.norm == "mean":
            return np.mean(energy, axis=-1, keepdims=True)
        expected = 2 * self.fs / (self.n * row.ntiles**2) * np.sum(row.window**2)
        return np.full((len(energy), 1), expected)

    def _time_matrix(self, ntiles: int) -> np.ndarray:
        """Return the [S, ntiles] matrix of gwpy's cubic interpolating spline (FITPACK's
        ``InterpolatedUnivariateSpline``, i.e. not-a-knot) from a row's tile times to the
        output times; interpolation is linear in the data, so one matrix serves every image."""
        from scipy.interpolate import (
            make_interp_spline,  # here, not at the top: the Snakefile imports this module
        )

        if ntiles not in self._time_matrices:
            x = np.arange(ntiles) * (self.duration / ntiles)
            self._time_matrices[ntiles] = make_interp_spline(x, np.eye(ntiles), k=3, axis=0)(
                self.times
            )
        return self._time_matrices[ntiles]

    def _frequency_matrix(self, plane: _Plane) -> np.ndarray:
        """Return the [S, n_rows] matrix of gwpy's frequency interpolation (a
        ``RectBivariateSpline`` over the plane's row frequencies, evaluated on the output grid)."""
        from scipy.interpolate import RectBivariateSpline

        n_rows = len(plane.frequencies)
        rows = np.empty((self.size, n_rows))
        x = np.arange(4.0)
        for j in range(n_rows):
            unit = np.zeros((4, n_rows))
            unit[:, j] = 1.0
            rows[:, j] = RectBivariateSpline(x, plane.frequencies, unit)(x[:1], self.frequencies)[
                0
            ]
        return rows

    def _interpolate(self, plane: _Plane, rows: list[np.ndarray]) -> np.ndarray:
        """Interpolate each row onto the output times, then each column onto the output
        frequencies, as gwpy's ``QGram.interpolate`` does; returns [B, S_f, S_t]."""
        on_times = np.stack(
            [energy @ self._time_matrix(energy.shape[-1]).T for energy in rows], axis=1
        )
        return np.einsum("fr,brt->bft", plane.frequency_matrix, on_times)

    def __call__(
        self,
        data: np.ndarray,
        asd: np.ndarray | None = None,
        components: Sequence[np.ndarray] = (),
    ):
        """Return the images [B, S, S] of ``data`` [B, n] (float32), and of each component.

        ``asd`` (the noise ASD on the rfft grid; None: data already white) whitens the data.
        Each ``components`` entry [B, n] (e.g. the glitch alone) is transformed on the plane
        chosen for ``data`` and divided by the same row medians, so its image gives the part
        of the data's normalised energy that it alone would carry.
        """
        data = np.atleast_2d(data)
        if self.norm == "psd" and asd is None:
            raise ValueError("norm 'psd' needs the noise ASD")
        fseries = self.whitened_fft(data, asd)
        comp_series = [self.whitened_fft(np.atleast_2d(c), asd) for c in components]
        batch = len(data)
        best_energy = np.full(batch, -np.inf)
        best_plane = np.zeros(batch, dtype=int)
        normalised: list[list[np.ndarray]] = []
        scales: list[list[np.ndarray]] = []
        for p, plane in enumerate(self.planes):
            rows, row_scales = [], []
            peak = np.zeros(batch)
            for row in plane.rows:
                energy = np.abs(self._row_series(fseries, row)) ** 2
                scale = self._normalise(energy, row)
                energy = energy / scale
                times = np.arange(row.ntiles) * (self.duration / row.ntiles)
                inside = (times >= self.outseg[0]) & (times < self.outseg[1])
                peak = np.maximum(peak, energy[:, inside].max(axis=-1))
                rows.append(energy)
                row_scales.append(scale)
            louder = peak > best_energy
            best_plane[louder], best_energy[louder] = p, peak[louder]
            normalised.append(rows)
            scales.append(row_scales)
        images = np.empty((batch, self.size, self.size), dtype=np.float32)
        comp_images = [
            np.zeros((batch, self.size, self.size), dtype=np.float32) for _ in components
        ]
        for p, plane in enumerate(self.planes):
            pick = np.flatnonzero(best_plane == p)
            if not len(pick):
                continue
            images[pick] = self._interpolate(plane, [rows[pick] for rows in normalised[p]])
            for series, out in zip(comp_series, comp_images):
                rows = [
                    np.abs(self._row_series(series[pick], row)) ** 2 / scale[pick]
                    for row, scale in zip(plane.rows, scales[p])
                ]
                out[pick] = self._interpolate(plane, rows)
        if components:
            return images, comp_images
        return images


def transform_for(settings: Mapping, sampling_frequency: float, duration: float) -> QTransform:
    """Return the :class:`QTransform` of the ``qtransform`` settings for samples of ``duration``
    centred on the glitch window (the image window is centred on the sample)."""
    half = settings["window"] / 2
    return QTransform(
        duration,
        sampling_frequency,
        image_size=settings["image-size"],
        qrange=settings["qrange"],
        frange=settings["frange"],
        outseg=(duration / 2 - half, duration / 2 + half),
        mismatch=settings["mismatch"],
        norm=settings["norm"],
    )
