"""anomaly: resonant anomaly detection stages (events, sideband flows, SIGMA, methods, summary)."""

from __future__ import annotations

import argparse

SECTION = "anomaly"


def _section(args: argparse.Namespace) -> tuple[dict, bool]:
    """Return (settings, whole_section): with --config the stage gets the whole anomaly section."""
    from twinflow.cli import settings_from

    return settings_from(args), args.config is not None


def _complete(section: dict) -> dict:
    """Fill the schema defaults into a hand-written anomaly section (as snakemake's validate does)."""
    from twinflow.anomaly.settings import with_defaults

    return with_defaults(section)


def _events(args):
    from twinflow.anomaly.data import prepare_events

    settings, whole = _section(args)
    if whole:
        settings = _complete(settings)
        settings = {"seed": settings["seed"], "data": settings["data"]}
    prepare_events(settings, args.out)


def _sideband_flow(args):
    from twinflow.anomaly.scan import train_sideband_flow
    from twinflow.anomaly.settings import region_index, sideband_flow_settings

    settings, whole = _section(args)
    if whole:
        settings = sideband_flow_settings(_complete(settings), region_index(args.region))
    train_sideband_flow(settings, args.events, args.out)


def _train_sigma(args):
    from twinflow.anomaly.scan import train_sigma
    from twinflow.anomaly.settings import region_index, sigma_settings

    settings, whole = _section(args)
    if whole:
        index = region_index(args.region) if args.region else None
        settings = sigma_settings(_complete(settings), index)
    train_sigma(settings, args.events, args.out)


def _method(args):
    from twinflow.anomaly.scan import run_method
    from twinflow.anomaly.settings import method_settings, region_index

    settings, whole = _section(args)
    if whole:
        settings = method_settings(_complete(settings), region_index(args.region), args.method)
    run_method(
        settings,
        args.events,
        args.out,
        sideband_flow=args.sideband_flow,
        sigma_model=args.sigma_model,
        sigma_cr_model=args.sigma_cr_model,
    )


def _gather(args):
    from twinflow.anomaly.gather import gather
    from twinflow.anomaly.settings import gather_settings

    settings, whole = _section(args)
    if whole:
        settings = gather_settings(_complete(settings))
    plots = {
        "sic": args.sic_plot,
        "roc": args.roc_plot,
        "w": args.w_plot,
        "timing": args.timing_plot,
        "significance": args.significance_plot,
        "w_grid": args.w_grid_plot,
        "signal_samples": args.signal_samples_plot,
    }
    gather(settings, args.results, args.out, plots=plots, sigma_model=args.sigma_model)


def _gather_nsig(args):
    from twinflow.anomaly.gather import gather_nsig
    from twinflow.anomaly.settings import nsig_gather_settings

    settings, whole = _section(args)
    if whole:
        settings = nsig_gather_settings(_complete(settings))
    plots = {
        "max_sic": args.sic_plot,
        "significance": args.significance_plot,
        "w": args.w_plot,
        "false_positives": args.false_positives_plot,
    }
    gather_nsig(settings, args.results, args.out, table=args.table, plots=plots)


def register(stages: argparse._SubParsersAction) -> None:
    from twinflow.cli import add_settings_arguments

    p = stages.add_parser("events", help="generate (or load) the event samples of the scan")
    add_settings_arguments(p, SECTION)
    p.add_argument("--out", required=True, help="output events file (HDF5)")
    p.set_defaults(func=_events)

    p = stages.add_parser(
        "sideband-flow", help="train the conditional background flow outside one signal region"
    )
    add_settings_arguments(p, SECTION)
    p.add_argument("--region", help="signal region, sr0, sr1, ... (needed with --config)")
    p.add_argument("--events", required=True, help="events file (HDF5)")
    p.add_argument("--out", required=True, help="output flow checkpoint")
    p.set_defaults(func=_sideband_flow)

    p = stages.add_parser(
        "train-sigma",
        help="train SIGMA's flow-matching model once on all data (or on one SR's sidebands)",
    )
    add_settings_arguments(p, SECTION)
    p.add_argument("--region", help="with --config: train on this SR's sidebands only (v_CR)")
    p.add_argument("--events", required=True, help="events file (HDF5)")
    p.add_argument("--out", required=True, help="output model checkpoint")
    p.set_defaults(func=_train_sigma)

    p = stages.add_parser(
        "method", help="fit one method in one signal region and score the test events"
    )
    add_settings_arguments(p, SECTION)
    p.add_argument("--region", help="signal region, sr0, sr1, ... (needed with --config)")
    p.add_argument("--method", help="method (needed with --config)")
    p.add_argument("--events", required=True, help="events file (HDF5)")
    p.add_argument("--sideband-flow", help="the region's sideband flow (anode, cathode, ranode)")
    p.add_argument("--sigma-model", help="the SIGMA model (sigma, sigma-context, sigma-data)")
    p.add_argument("--sigma-cr-model", help="the SR's sideband SIGMA model (sigma-cr)")
    p.add_argument("--out", required=True, help="output scores (HDF5)")
    p.set_defaults(func=_method)

    p = stages.add_parser(
        "gather", help="summary.json and the report plots over all regions and methods"
    )
    add_settings_arguments(p, SECTION)
    p.add_argument("--results", nargs="+", required=True, help="the method outputs (HDF5)")
    p.add_argument("--sigma-model", help="the SIGMA model (for its one-off training time)")
    p.add_argument("--out", required=True, help="output summary (JSON)")
    for name in ("sic", "roc", "w", "timing", "significance"):
        p.add_argument(f"--{name}-plot", required=True, help=f"output {name} plot")
    p.add_argument("--w-grid-plot", help="output plot of R-ANODE's SIC against a fixed w")
    p.add_argument("--signal-samples-plot", help="output plot of samples of R-ANODE's P_S")
    p.set_defaults(func=_gather)

    p = stages.add_parser(
        "gather-nsig",
        help="the signal-injection scan: table, summary and plots over (N_sig, seed, SR, method)",
    )
    add_settings_arguments(p, SECTION)
    p.add_argument("--results", nargs="+", required=True, help="the method outputs (HDF5)")
    p.add_argument("--out", required=True, help="output summary (JSON)")
    p.add_argument("--table", required=True, help="output table (CSV), one row per job")
    for name in ("sic", "significance", "w", "false-positives"):
        p.add_argument(f"--{name}-plot", required=True, help=f"output {name} plot")
    p.set_defaults(func=_gather_nsig)
