"""Signal regions of the resonant feature m: the SR window and its sidebands, and the check that
a region has enough sideband events to train on.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np

from twinflow.anomaly.events import Events
from twinflow.core.settings import (
    ConfigError,
)


@dataclasses.dataclass(frozen=True)
class SignalRegion:
    """A window [low, high) in m_JJ (TeV) with sidebands.

    The density methods learn the background from *all* data outside the window (the
    sidebands, interpolated into it); CWoLa compares the window with its neighbouring sidebands
    of ``sideband_width`` on either side.
    """

    index: int
    low: float
    high: float
    sideband_width: float

    @property
    def name(self) -> str:
        return f"sr{self.index}"

    @property
    def centre(self) -> float:
        return 0.5 * (self.low + self.high)

    def inside(self, m: np.ndarray) -> np.ndarray:
        return (m >= self.low) & (m < self.high)

    def sidebands(self, m: np.ndarray) -> np.ndarray:
        return ~self.inside(m)

    def neighbouring_sidebands(self, m: np.ndarray) -> np.ndarray:
        return ((m >= self.low - self.sideband_width) & (m < self.low)) | (
            (m >= self.high) & (m < self.high + self.sideband_width)
        )

    @classmethod
    def from_settings(cls, settings: Mapping) -> SignalRegion:
        return cls(
            int(settings["index"]),
            float(settings["low"]),
            float(settings["high"]),
            float(settings["sideband-width"]),
        )


def check_region(region: SignalRegion, data: Events, min_sideband_events: int) -> None:
    """Raise :class:`ConfigError` if the region leaves the data's m range or a sideband is too thin."""
    lo, hi = float(data.m.min()), float(data.m.max())
    if region.low - region.sideband_width < lo or region.high + region.sideband_width > hi:
        raise ConfigError(
            f"anomaly.scan.centres: signal region {region.name} [{region.low:g}, {region.high:g}) TeV with "
            f"{region.sideband_width:g} TeV sidebands lies outside the data's m_JJ range [{lo:.3g}, {hi:.3g}] TeV; "
            "choose centres whose window and sidebands fit inside it"
        )
    below = int(((data.m >= region.low - region.sideband_width) & (data.m < region.low)).sum())
    above = int(((data.m >= region.high) & (data.m < region.high + region.sideband_width)).sum())
    if min(below, above) < min_sideband_events:
        raise ConfigError(
            f"anomaly.scan.min-sideband-events = {min_sideband_events}: signal region {region.name} "
            f"[{region.low:g}, {region.high:g}) TeV has only {below} events in its lower and {above} in its upper "
            f"sideband (width {region.sideband_width:g} TeV); widen anomaly.scan.sideband-width, move the region, "
            "or lower the minimum"
        )
