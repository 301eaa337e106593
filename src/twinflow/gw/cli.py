"""gw: amortized gravitational-wave inference stages."""

from __future__ import annotations

import argparse


def _psd(args: argparse.Namespace) -> None:
    from twinflow.cli import settings_from
    from twinflow.gw.psd import estimate_psd_bank
    from twinflow.gw.settings import psd_settings_for

    settings = settings_from(args)
    if args.config is not None:  # a whole config file: resolve the detector's own settings
        settings = psd_settings_for(settings, args.detector)
    estimate_psd_bank(settings, args.out, plot=args.plot)


def register(stages: argparse._SubParsersAction) -> None:
    from twinflow.cli import add_settings_arguments

    p = stages.add_parser("psd", help="estimate a PSD bank for one detector")
    add_settings_arguments(p, "gw")
    p.add_argument("--detector", help="detector (needed with --config)")
    p.add_argument("--out", required=True, help="output PSD bank (HDF5)")
    p.add_argument("--plot", help="output plot of the bank's ASD percentiles")
    p.set_defaults(func=_psd)
