"""The sky and merger time in the detectors' frame, where the refinement's mixtures work.

Two detectors place a source on a ring around the line that joins them. The ring's opening
angle is set by the difference of the arrival times, and the arrival time at either detector
is measured to a fraction of a millisecond. The merger time at the geocentre is not: it slides
along the ring by up to the Earth's radius over c (21 ms). In (ra, dec, geocent_time) the
posterior is therefore a thin ring on the sky with the time tied to the position on it, a shape
that Gaussian mixtures follow poorly. In the zenith and azimuth of the source about the
detectors' baseline and the arrival time at the first detector, the same posterior is a narrow
band in zenith and in time, each nearly independent of the azimuth.

The coordinates are bilby's (``reference_frame="H1L1"``, ``time_reference="H1"``):

* ``zenith``, ``azimuth``: the direction to the source in the Earth-fixed frame rotated so that
  its z axis points along ``vertex_1 - vertex_2`` (bilby_cython's ``rotation_matrix_from_delta``,
  the rotation of bilby's ``zenith_azimuth_to_ra_dec``). With one detector the z axis is its
  vertex, so the zenith alone sets its delay.
* ``<detector>_time``: the arrival time at the first detector, ``tau = t_c + delay_1``, here as
  an offset from the trigger as ``geocent_time`` is.

The map is exact both ways. The delay depends only on the Earth-fixed direction, so
``t_c = tau - delay_1(zenith, azimuth)`` needs no iteration, and then ``ra`` is the Earth-fixed
longitude plus GMST(t_c). (bilby's ``time_reference`` evaluates the delay at GMST(tau) instead,
about 1e-7 s away.) Its Jacobian is that of the sky rotation alone:
``|d(ra, dec, t_c) / d(zenith, azimuth, tau)| = sin(zenith) / cos(dec)``. The GMST term drops
out: ``ra`` depends on ``tau`` only through ``t_c``, and the row operation ``ra - Omega t_c``
removes it without changing the determinant. So an isotropic sky prior is isotropic in
(zenith, azimuth) too, and importance weights computed in either set of coordinates are the same.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from twinflow.gw.detectors import (
    SPEED_OF_LIGHT,
    detector_geometry,
    greenwich_mean_sidereal_time,
    time_delay_from_geocenter,
)

#: The parameters the frame replaces, in the order of :attr:`DetectorFrame.names`.
SKY_AND_TIME = ("ra", "dec", "geocent_time")


class DetectorFrame:
    """Maps (ra, dec, geocent_time offset) to (zenith, azimuth, arrival-time offset) and back.

    ``detectors`` are the event's, in order: the first two define the baseline (the first alone
    if there is one), the first is the time reference. ``trigger_time`` is the GPS time the
    offsets are measured from.
    """

    def __init__(self, detectors: Sequence[str], trigger_time: float):
        from bilby_cython.geometry import rotation_matrix_from_delta

        geometries = [detector_geometry(d) for d in list(detectors)[:2]]
        if not geometries:
            raise ValueError("a detector frame needs at least one detector")
        axis = geometries[0].vertex
        if len(geometries) == 2:
            axis = geometries[0].vertex - geometries[1].vertex
        self.rotation = np.asarray(rotation_matrix_from_delta(np.asarray(axis, dtype=float)))
        self.vertex = geometries[0].vertex
        self.trigger_time = float(trigger_time)
        self.names = ("zenith", "azimuth", f"{geometries[0].name}_time")

    @property
    def max_delay(self) -> float:
        """Largest |delay| of the reference detector from the geocentre [s]."""
        return float(np.linalg.norm(self.vertex) / SPEED_OF_LIGHT)

    def to_frame(self, ra, dec, time_offset) -> tuple[np.ndarray, ...]:
        """Return zenith, azimuth, arrival-time offset and ln |d(frame) / d(ra, dec, t_c)|."""
        ra, dec, dt = (np.asarray(x, dtype=float) for x in (ra, dec, time_offset))
        longitude = ra - greenwich_mean_sidereal_time(self.trigger_time + dt)
        direction = np.stack(
            [np.cos(dec) * np.cos(longitude), np.cos(dec) * np.sin(longitude), np.sin(dec)], -1
        )
        local = direction @ self.rotation  # rows: R^T n
        zenith = np.arccos(np.clip(local[..., 2], -1.0, 1.0))
        azimuth = np.mod(np.arctan2(local[..., 1], local[..., 0]), 2 * np.pi)
        # the delay sees the Earth-fixed longitude only: GMST 0 with ra = longitude
        tau = dt + time_delay_from_geocenter(self.vertex, longitude, dec, 0.0)
        return zenith, azimuth, tau, np.log(np.abs(np.cos(dec))) - np.log(np.sin(zenith))

    def from_frame(self, zenith, azimuth, tau) -> tuple[np.ndarray, ...]:
        """Return ra, dec, geocent_time offset and ln |d(ra, dec, t_c) / d(frame)|."""
        zenith, azimuth, tau = (np.asarray(x, dtype=float) for x in (zenith, azimuth, tau))
        local = np.stack(
            [np.sin(zenith) * np.cos(azimuth), np.sin(zenith) * np.sin(azimuth), np.cos(zenith)],
            -1,
        )
        direction = local @ self.rotation.T  # rows: R n'
        dec = np.arcsin(np.clip(direction[..., 2], -1.0, 1.0))
        longitude = np.arctan2(direction[..., 1], direction[..., 0])
        dt = tau - time_delay_from_geocenter(self.vertex, longitude, dec, 0.0)
        ra = np.mod(longitude + greenwich_mean_sidereal_time(self.trigger_time + dt), 2 * np.pi)
        return ra, dec, dt, np.log(np.abs(np.sin(zenith))) - np.log(np.cos(dec))

    def bounds(self, time_bounds: Sequence[float]) -> np.ndarray:
        """Return the frame's box [[lo, hi]] x 3 for a geocent_time offset within ``time_bounds``.

        The arrival time reaches the geocentre window widened by the largest delay; points of
        the box whose geocentre time falls outside the window have zero prior.
        """
        lo, hi = (float(t) for t in time_bounds)
        return np.array(
            [[0.0, np.pi], [0.0, 2 * np.pi], [lo - self.max_delay, hi + self.max_delay]]
        )
