"""Resolve the settings each gw stage runs with from the ``gw`` section of the config.

The workflow (``workflow/rules/common.smk``) and the CLI both call these, so a rule's
``params:`` and a by-hand run see exactly the same values.
"""

from __future__ import annotations

from collections.abc import Mapping

from twinflow.core.settings import require_choice
from twinflow.gw.psd import KNOWN_DETECTORS

# What the PSD stage needs from the gw section's top level, in a stable order.
ANALYSIS_KEYS = ("duration", "sampling-frequency", "maximum-frequency")


def psd_settings_for(gw: Mapping, detector: str) -> dict:
    """Return the PSD-stage settings for one detector.

    Only this detector's curve or files are included, so editing another detector's entry
    does not rerun this detector's job.
    """
    require_choice("detectors", detector, KNOWN_DETECTORS)
    psd = gw["psd"]
    sim = {k: v for k, v in psd["simulation"].items() if k != "curves"}
    sim["curve"] = psd["simulation"]["curves"].get(detector)
    files = {
        "strain": list(psd["files"].get("strain", {}).get(detector, [])),
        "channel": psd["files"].get("channel-dict", {}).get(detector),
    }
    return {
        "detector": detector,
        **{key: gw[key] for key in ANALYSIS_KEYS},
        **{k: v for k, v in psd.items() if k not in ("simulation", "files")},
        "simulation": sim,
        "files": files,
    }
