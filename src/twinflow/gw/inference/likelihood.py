"""The exact stationary-Gaussian GW likelihood on the uniform frequency grid, batched over samples.

For an event with frequency-domain strain ``d_k`` and PSD ``S_k`` in detectors ``k``::

    ln L(theta) = ln L_noise + sum_k [ Re<h_k, d_k> - <h_k, h_k> / 2 ],
    <a, b>_k    = 4/T sum_{f_min,k <= f <= f_max,k} conj(a(f)) b(f) / (S_k(f) w),
    h_k(f)      = [F+_k h+(f) + Fx_k hx(f)] exp(-2 pi i f (t_c + dt_k - t_start)),

with ``w`` the window factor and ``ln L_noise = -sum_k <d_k, d_k> / 2``. This is bilby's
``GravitationalWaveTransient`` term by term (no calibration model, no time or distance
marginalisation): the same waveform call (LALSimulation ``SimInspiralChooseFDWaveform`` with
bilby's parameter conversion), antenna patterns and geocentre delays evaluated at each sample's
``geocent_time`` with bilby's sidereal time, and the same inner products. What differs is the
batching: waveforms come from a process pool, chunk by chunk, and within a chunk the projection
and inner products of a few samples at a time (as many as fit the CPU cache) are single numpy
operations over ``[samples, bins]`` arrays.

Time arithmetic. ``geocent_time`` is an absolute GPS time (~1e9 s), whose float64 spacing is
2.4e-7 s. bilby forms ``dt = (geocent_time - start_time) + delay``; computing the same shift
from a trigger-relative offset instead (``(trigger - start) + offset``) differs by up to one
rounding of ``trigger + offset``, i.e. ~1e-7 s, which at 100-250 Hz moves ``Re<h, d>`` by
``~2 pi f 1e-7 rho`` ~ 3e-3 at network SNR ~45: a 3e-6 relative change of ln L ~ 960. That is
the mismatch an earlier vectorised attempt saw; this module forms ``dt`` exactly as bilby does,
so the two agree to rounding (tested to 1e-6 relative, typically 1e-12).

Phase marginalisation (optional). For waveform models whose h+ and hx depend on the reference
phase only through one overall factor ``exp(2 i s phase)`` (models with the (2, +-2) modes only,
e.g. IMRPhenomXAS, IMRPhenomD, and with bilby's spin convention also IMRPhenomPv2; checked
numerically, with aligned and in-plane spins, when the likelihood is built), the integral over a
uniform phase prior is exact::

    ln L_marg = ln I0(|<h(phase=0), d>|) - <h, h> / 2      (as bilby's phase_marginalization)

and the phase can be reconstructed afterwards by drawing it from its exact conditional
posterior, a von Mises distribution in ``2 s phase`` (:meth:`GaussianLikelihood.reconstruct_phase`).
Dingo offers the same analytic option for 22-mode models (``approximation_22_mode``) and a
synthetic-phase reconstruction; for models with higher modes (IMRPhenomXHM, IMRPhenomXPHM)
this module refuses phase marginalisation rather than return an approximate answer: infer the
phase instead.

This module is longer than 400 lines because the batched evaluation (projection, cache-sized
blocks, worker processes) is one piece of work that only reads well together.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
from collections.abc import Iterator, Mapping

import numpy as np
import scipy.special

from twinflow.core.progress import progress
from twinflow.core.settings import ConfigError, require
from twinflow.gw.detectors import (
    antenna_patterns,
    detector_geometry,
    greenwich_mean_sidereal_time,
    time_delay_from_geocenter,
)
from twinflow.gw.inference.events import EventData
from twinflow.gw.inference.polarisations import (
    WaveformSettings,
    _WaveformMaker,
)
from twinflow.gw.prior import EXTRINSIC
from twinflow.gw.waveforms import check_approximant

#: Parameters every sample needs (besides masses and spins, which bilby's conversion fills in).
PER_SAMPLE_PARAMETERS = ("theta_jn", *EXTRINSIC)


def ln_i0(x: np.ndarray) -> np.ndarray:
    """Return ln I0(x), stable for large x (I0: modified Bessel function of order 0)."""
    x = np.asarray(x, dtype=float)
    return np.log(scipy.special.i0e(x)) + x


# --------------------------------------------------------------------------------------------
# Detector geometry (vectorised versions of bilby_cython's formulas)


# --------------------------------------------------------------------------------------------
# Waveforms (LALSimulation, with bilby's parameter conversion)


# --------------------------------------------------------------------------------------------
# The likelihood


@dataclasses.dataclass
class LikelihoodTerms:
    """Per-sample terms: ln L ratio, <h, d> (complex, summed over detectors), <h, h>."""

    log_likelihood_ratio: np.ndarray  # [n]
    d_inner_h: np.ndarray  # [n] complex
    optimal_snr_squared: np.ndarray  # [n]


class _Projector:
    """Detector projection and inner products of a block of samples, vectorised over samples.

    Per detector, the projected waveform without its time shift, ``y = F+ h+ + Fx hx`` on the
    detector's band, is formed once into a reused buffer; both inner products read it:
    ``<h, h> = sum w |y|^2`` and ``<h, d>``, which needs the time shift ``exp(2 pi i f dt)`` per
    sample and bin. With ``f = f_0 + j df`` and ``j = a B + b`` the shift factorises into
    ``exp(i theta a B) exp(i theta b)``, so a sample costs ``~sqrt(n_bins)`` complex exponentials
    instead of ``n_bins`` and the sum over bins becomes a batched matrix-vector product (the
    band is zero-padded to ``A B`` bins; data and buffer are zero there).

    Why this shape: these are memory-bound passes over ``[samples, bins]`` arrays, so the fewer
    passes the better, and the waveforms of a block (``block`` samples) and the ``y`` buffers
    stay in the CPU cache. Sums are ``einsum`` calls, not ``matmul``: the small products would go
    to a multithreaded BLAS whose spinning threads cost 3-30x more CPU on a loaded machine
    (measured).
    """

    def __init__(self, data: EventData, band: slice, block: int):
        f = data.frequencies
        self.start_time = data.start_time
        self.detectors = []
        for name in data.detectors:
            mask = data.frequency_mask(name)
            idx = np.flatnonzero(mask)
            if idx.size == 0:
                raise ConfigError(
                    f"{name}: the band {data.minimum_frequency[name]}-"
                    f"{data.maximum_frequency[name]} Hz holds no frequency bin"
                )
            require(
                np.all(np.diff(idx) == 1), f"frequency mask of {name}", name, "a contiguous band"
            )
            local = slice(idx[0] - band.start, idx[-1] + 1 - band.start)
            psd = data.psd[name][mask] * data.window_factor
            require(
                np.all(np.isfinite(psd) & (psd > 0)),
                f"psd of {name}",
                "non-positive values",
                f"a positive PSD on {data.minimum_frequency[name]}-{data.maximum_frequency[name]} Hz",
            )
            weight = (4.0 / data.duration) / psd  # [n_k]
            n_k = idx.size
            blocks = int(np.ceil(np.sqrt(n_k)))
            rows = -(-n_k // blocks)
            data_weighted_conj = np.zeros(rows * blocks, dtype=complex)
            data_weighted_conj[:n_k] = np.conj(data.strain[name][mask]) * weight
            self.detectors.append(
                dict(
                    geometry=detector_geometry(name),
                    n_bins=n_k,
                    pairs=slice(
                        2 * local.start, 2 * local.stop
                    ),  # the band in (re, im) float views
                    weight2=np.repeat(weight, 2),  # for (re, im) pairs
                    data_weighted_conj=data_weighted_conj.reshape(rows, blocks),
                    f0=f[idx[0]],
                    df=f[1] - f[0],
                    inner_index=np.arange(blocks, dtype=float),
                    outer_index=blocks * np.arange(rows, dtype=float),
                    # y of a block; the padding beyond n_k is never written and stays zero
                    y=np.zeros((block, rows * blocks), dtype=complex),
                )
            )

    def factors(self, p: Mapping[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
        """Return per detector the per-sample antenna patterns and time-shift factors of a chunk."""
        ra, dec, psi, t_c = p["ra"], p["dec"], p["psi"], p["geocent_time"]
        gmst = np.fmod(greenwich_mean_sidereal_time(t_c), 2 * np.pi)
        out = []
        for det in self.detectors:
            geometry = det["geometry"]
            f_plus, f_cross = antenna_patterns(geometry.tensor, ra, dec, psi, gmst)
            # bilby: subtract the two ~1e9 s GPS times first, then add the ~1e-2 s delay
            dt = (t_c - self.start_time) + time_delay_from_geocenter(
                geometry.vertex, ra, dec, gmst
            )
            theta = -2 * np.pi * det["df"] * dt  # [n]
            out.append(
                dict(
                    antenna=np.stack([f_plus, f_cross], axis=1),  # [n, 2]
                    inner=np.exp(1j * theta[:, None] * det["inner_index"]),  # [n, B]
                    outer=np.exp(1j * theta[:, None] * det["outer_index"]),  # [n, A]
                    shift0=np.exp(-2j * np.pi * det["f0"] * dt),
                )
            )  # [n]
        return out

    def __call__(
        self, h: np.ndarray, factors: list[dict[str, np.ndarray]], rows: slice
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return (<h, d> complex, <h, h>) [m] summed over detectors for a block of samples.

        ``h`` is [m, 2, n_band] complex (h+, hx); ``factors`` are a chunk's (:meth:`factors`), of
        which the block holds ``rows``.
        """
        m = h.shape[0]
        d_inner_h = np.zeros(m, dtype=complex)
        h_inner_h = np.zeros(m)
        h_pairs = h.view(float)  # [m, 2, 2 n_band]: (re, im) pairs, real arithmetic
        for det, fac in zip(self.detectors, factors):
            y = det["y"][:m]
            y_pairs = y.view(float)[:, : 2 * det["n_bins"]]
            # y = F+ h+ + Fx hx on the detector's band, in one pass
            np.einsum("np,npk->nk", fac["antenna"][rows], h_pairs[:, :, det["pairs"]], out=y_pairs)
            h_inner_h += np.einsum("nk,nk,k->n", y_pairs, y_pairs, det["weight2"])
            # sum_f conj(h exp(-2 pi i f dt)) d w = conj(sum_f y conj(d w) exp(-2 pi i f dt))
            data_weighted_conj = det["data_weighted_conj"]  # [A, B]
            partial = np.einsum(
                "nab,ab,nb->na",
                y.reshape(m, *data_weighted_conj.shape),
                data_weighted_conj,
                fac["inner"][rows],
            )  # [m, A]
            total = np.einsum("na,na->n", partial, fac["outer"][rows]) * fac["shift0"][rows]
            d_inner_h += total.conj()
        return d_inner_h, h_inner_h


class _ChunkEvaluator:
    """<h, d>, <h, h> and failures of a chunk of samples: waveforms and inner products block by block.

    A block's waveforms go from LALSimulation's arrays into one reused buffer of ``block``
    samples, small enough to stay in the CPU cache while the projector reads it (a chunk's
    waveforms at once would be tens of MB: every pass would go to memory, and fresh buffers
    of that size cost page faults).
    """

    def __init__(self, data: EventData, waveform: WaveformSettings, band: slice):
        n_band = band.stop - band.start
        # h+, hx of a block ~1 MB (a core's L2 cache holds 0.5-2 MB on current CPUs), 1 .. 64 samples
        self.block = int(np.clip(2**20 // (32 * n_band), 1, 64))
        self.maker = _WaveformMaker(waveform, band)
        self.projector = _Projector(data, band, self.block)
        self.h = np.zeros((self.block, 2, n_band), dtype=complex)

    def __call__(
        self, chunk: Mapping[str, np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        arguments = self.maker.arguments(chunk)
        factors = self.projector.factors(chunk)
        n = len(arguments)
        d_inner_h, h_inner_h, failed = (
            np.empty(n, dtype=complex),
            np.empty(n),
            np.empty(n, dtype=bool),
        )
        for start in range(0, n, self.block):
            rows = slice(start, min(start + self.block, n))
            h = self.h[: rows.stop - rows.start]
            failed[rows] = self.maker.fill(arguments[rows], h)
            d_inner_h[rows], h_inner_h[rows] = self.projector(h, factors, rows)
        return d_inner_h, h_inner_h, failed


def _broadcast(parameters: Mapping, n: int) -> dict[str, np.ndarray]:
    return {
        k: np.broadcast_to(np.asarray(v, dtype=float), (n,)).copy() for k, v in parameters.items()
    }


# State of a worker process (set once by the pool initializer; lal objects do not pickle).
_WORKER: dict = {}


def _init_worker(data: EventData, waveform: WaveformSettings, band: slice) -> None:
    _WORKER["evaluate"] = _ChunkEvaluator(data, waveform, band)


def _evaluate_chunk(chunk: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return _WORKER["evaluate"](chunk)


class GaussianLikelihood:
    """The stationary-Gaussian likelihood of one event, batched over samples.

    Parameters are bilby's names (``chirp_mass``, ``mass_ratio``, ``chi_1``, ``chi_2`` or the
    precessing spins, ``theta_jn``, ``phase``, ``luminosity_distance``, ``ra``, ``dec``, ``psi``,
    ``geocent_time`` as absolute GPS time), each an array [n] or a scalar (fixed value).
    ``processes`` worker processes generate the waveforms (default: the CPUs this process may
    use); use it as a context manager, or call :meth:`close`, to end them.
    """

    def __init__(
        self,
        data: EventData,
        approximant: str,
        reference_frequency: float,
        *,
        phase_marginalization: bool = False,
        processes: int | None = None,
        chunk_size: int | None = None,
    ):
        check_approximant(approximant, key="approximant")
        self.data = data
        self.phase_marginalization = phase_marginalization
        f = data.frequencies
        masks = np.stack([data.frequency_mask(d) for d in data.detectors])
        union = np.flatnonzero(masks.any(axis=0))
        if union.size == 0:
            raise ConfigError("no frequency bin lies in any detector's band")
        self.band = slice(int(union[0]), int(union[-1]) + 1)
        # bilby_pipe: the waveform spans the lowest minimum and highest maximum frequency
        self.waveform = WaveformSettings(
            approximant=str(approximant),
            reference_frequency=float(reference_frequency),
            minimum_frequency=float(min(data.minimum_frequency[d] for d in data.detectors)),
            maximum_frequency=float(max(data.maximum_frequency[d] for d in data.detectors)),
            delta_f=float(f[1] - f[0]),
            n_frequencies=len(f),
        )
        self.noise_log_likelihood = float(
            sum(
                -0.5
                * (4.0 / data.duration)
                * np.sum(np.abs(data.strain[d][m]) ** 2 / (data.psd[d][m] * data.window_factor))
                for d, m in zip(data.detectors, masks)
            )
        )
        # samples per chunk (a pool worker's unit of work), 8 .. 128, fewer for wide bands; memory
        # and cache use do not depend on it (_ChunkEvaluator works in cache-sized blocks)
        n_band = self.band.stop - self.band.start
        self.chunk_size = int(chunk_size or min(128, max(8, 2**22 // (16 * n_band))))
        self.processes = int(processes or len(os.sched_getaffinity(0)))
        self._pool = None
        self._local = None
        self.phase_sign = self._phase_dependence() if phase_marginalization else None

    # -- process pool --------------------------------------------------------------------------
    def _evaluate(self, chunks: list[dict]) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Yield (<h, d>, <h, h>, failed) per chunk, in order: in this process or from the pool."""
        if self.processes <= 1 or len(chunks) <= 1:
            if self._local is None:
                self._local = _ChunkEvaluator(self.data, self.waveform, self.band)
            for chunk in chunks:
                yield self._local(chunk)
            return
        if self._pool is None:  # fork: the workers inherit the imported modules (spawn elsewhere)
            methods = multiprocessing.get_all_start_methods()
            context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
            self._pool = context.Pool(
                self.processes,
                initializer=_init_worker,
                initargs=(self.data, self.waveform, self.band),
            )
        yield from self._pool.imap(_evaluate_chunk, chunks)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool.join()
            self._pool = None

    def __enter__(self) -> GaussianLikelihood:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_pool", None) is not None:
            self._pool.terminate()

    # -- evaluation ----------------------------------------------------------------------------
    def evaluate(
        self, parameters: Mapping[str, np.ndarray], *, show_progress: bool = False
    ) -> LikelihoodTerms:
        """Return the per-sample likelihood terms for ``parameters`` (dict of [n] arrays or scalars)."""
        missing = [k for k in PER_SAMPLE_PARAMETERS if k not in parameters]
        if missing:
            raise KeyError(f"parameters lack {missing}")
        n = max((np.size(v) for v in parameters.values()), default=1)
        p = _broadcast(parameters, n)
        if self.phase_marginalization:
            p["phase"] = np.zeros(
                n
            )  # the result does not depend on it; <h(phase=0), d> reconstructs it
        chunks = [
            {k: v[i : i + self.chunk_size] for k, v in p.items()}
            for i in range(0, n, self.chunk_size)
        ]
        d_inner_h = np.empty(n, dtype=complex)
        h_inner_h = np.empty(n)
        failed = np.empty(n, dtype=bool)
        bar = progress(desc="likelihood", total=n, unit="sample", disable=not show_progress)
        for i, (dh, hh, bad) in zip(range(0, n, self.chunk_size), self._evaluate(chunks)):
            d_inner_h[i : i + len(hh)], h_inner_h[i : i + len(hh)], failed[i : i + len(hh)] = (
                dh,
                hh,
                bad,
            )
            bar.update(len(hh))
        bar.close()
        if self.phase_marginalization:
            log_l = ln_i0(np.abs(d_inner_h)) - h_inner_h / 2
        else:
            log_l = d_inner_h.real - h_inner_h / 2
        log_l[failed] = -np.inf
        return LikelihoodTerms(log_l, d_inner_h, h_inner_h)

    def log_likelihood_ratio(self, parameters: Mapping[str, np.ndarray], **kwargs) -> np.ndarray:
        """Return ln L - ln L_noise [n] (bilby's ``log_likelihood_ratio``)."""
        return self.evaluate(parameters, **kwargs).log_likelihood_ratio

    def log_likelihood(self, parameters: Mapping[str, np.ndarray], **kwargs) -> np.ndarray:
        """Return ln L [n] (bilby's ``log_likelihood``, without the PSD normalisation constant)."""
        return self.log_likelihood_ratio(parameters, **kwargs) + self.noise_log_likelihood

    # -- phase ----------------------------------------------------------------------------------
    def _phase_dependence(self) -> int:
        """Return s in h(phase) = h(0) exp(2 i s phase); ConfigError unless the model has that form."""
        import lalsimulation as lalsim

        maker = _WaveformMaker(self.waveform, slice(0, self.waveform.n_frequencies))
        common = dict(chirp_mass=25.0, mass_ratio=0.7, theta_jn=0.9, luminosity_distance=500.0)
        probes = [dict(common, chi_1=0.3, chi_2=-0.2)]
        if (
            lalsim.SimInspiralGetSpinSupportFromApproximant(maker.approximant)
            == lalsim.SIM_INSPIRAL_PRECESSINGSPIN
        ):
            probes.append(
                dict(common, a_1=0.5, a_2=0.4, tilt_1=1.0, tilt_2=2.0, phi_12=0.7, phi_jl=2.1)
            )
        signs = []
        for probe in probes:
            probe = {k: np.array([v]) for k, v in probe.items()}
            h = [maker({**probe, "phase": np.array([phase])}) for phase in (0.0, np.pi / 4)]
            if h[0][2][0] or h[1][2][0]:
                raise ConfigError(
                    f"approximant = {self.waveform.approximant!r} failed on a test binary"
                )
            nonzero = np.abs(h[0][0][0]) > 1e-3 * np.abs(h[0][0][0]).max()
            ratios = np.concatenate(
                [h[1][j][0][nonzero] / h[0][j][0][nonzero] for j in (0, 1)]
            )  # e^{i s pi/2}
            signs.append(int(np.sign(ratios.imag.mean())))
            if not np.allclose(ratios, 1j * signs[-1], atol=1e-6):
                raise ConfigError(
                    "phase marginalisation is exact only for models in which the phase enters h+ and hx "
                    f"as one overall factor exp(2 i phase) (e.g. (2, +-2)-mode models); approximant = "
                    f"{self.waveform.approximant!r} changes them by more than that (higher modes): "
                    "infer the phase with the model instead"
                )
        sign = signs[0]
        return sign

    def reconstruct_phase(self, d_inner_h: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Draw the phase [n] from its exact conditional posterior given the other parameters.

        With ``z = <h(phase=0), d>`` and ``h(phase) = h(0) exp(2 i s phase)``,
        ``Re<h(phase), d> = |z| cos(arg z - 2 s phase)``: ``2 s phase`` is von Mises with mean
        ``arg z`` and concentration ``|z|``, and phase and phase + pi are equally likely.
        """
        if not self.phase_marginalization:
            raise RuntimeError("reconstruct_phase needs a phase-marginalised likelihood")
        z = np.asarray(d_inner_h)
        alpha = rng.vonmises(np.angle(z), np.abs(z))
        branch = rng.integers(0, 2, size=z.shape)
        return np.mod(self.phase_sign * alpha / 2 + np.pi * branch, 2 * np.pi)
