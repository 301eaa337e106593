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


def _gw_settings(args: argparse.Namespace, resolver_name: str) -> dict:
    """Return a stage's settings: --settings as given, or resolved from a --config file's gw section."""
    from twinflow.cli import settings_from
    from twinflow.gw import settings as gw_settings

    settings = settings_from(args)
    return getattr(gw_settings, resolver_name)(settings) if args.config is not None else settings


def _dataset_domain(args: argparse.Namespace) -> None:
    from twinflow.gw.dataset.grid import resolve_domain

    resolve_domain(_gw_settings(args, "dataset_domain_settings_for"), args.out)


def _dataset_shard(args: argparse.Namespace) -> None:
    from twinflow.gw.dataset.shards import simulate_shard

    simulate_shard(
        _gw_settings(args, "dataset_shard_settings_for"), args.domain, args.shard, args.out
    )


def _dataset_index(args: argparse.Namespace) -> None:
    from twinflow.gw.dataset.shards import write_index

    index = write_index(args.shards, args.out)
    print(f"indexed {len(index['shards'])} shards, {index['n-total']} waveforms: {args.out}")


def _dataset_plots(args: argparse.Namespace) -> None:
    from twinflow.core.settings import ConfigError
    from twinflow.gw.dataset.plots import plot_examples

    psd = {}
    for item in args.psd:
        detector, _, path = item.partition("=")
        if not path:
            raise ConfigError(f"--psd {item!r}: expected DETECTOR=PATH")
        psd[detector] = path
    plot_examples(
        _gw_settings(args, "batch_settings_for"), args.index, psd, args.strain_plot, args.mask_plot
    )


def _train(args: argparse.Namespace) -> None:
    from twinflow.gw.training.stage import train_posterior_model

    settings = _gw_settings(args, "train_settings_for")
    if args.time_budget_from:
        from twinflow.gw.training.compare import budget_from_summary

        settings["train"] = budget_from_summary(settings["train"], args.time_budget_from)
    train_posterior_model(
        settings,
        dataset_index=args.index,
        psd_banks=args.psd,
        model_path=args.model,
        metrics_path=args.metrics,
        plot_path=args.plot,
        summary_path=args.summary,
        state_path=args.state,
    )


def _compare_table(args: argparse.Namespace) -> None:
    import json

    from twinflow.gw.training.compare import compare_table

    manifest = json.loads(args.manifest)
    table = compare_table(
        manifest["training"],
        manifest["injections"],
        manifest["sweeps"],
        args.out,
        args.markdown,
        args.tsv,
    )
    print(table["verdict"])


def _psd_map(items) -> dict[str, str]:
    """Return {detector: path} from DETECTOR=PATH arguments."""
    from twinflow.core.settings import ConfigError

    out = {}
    for item in items or []:
        detector, _, path = item.partition("=")
        if not path:
            raise ConfigError(f"--psd {item!r}: expected DETECTOR=PATH")
        out[detector] = path
    return out


def _inference(args: argparse.Namespace) -> None:
    from pathlib import Path

    from twinflow.cli import settings_from
    from twinflow.core.settings import ConfigError
    from twinflow.gw.inference.report import plot_event_asd, plot_event_corner
    from twinflow.gw.inference.stage import run_event
    from twinflow.gw.settings import inference_settings_for

    settings = settings_from(args)
    if args.config is not None:  # a whole config file: resolve this event's settings
        if not args.event:
            raise ConfigError(
                "--event is needed with --config (injection-<i> or a configured event)"
            )
        settings = inference_settings_for(settings, args.event)
    run_event(
        settings, args.model, args.out_dir, psd_paths=_psd_map(args.psd), processes=args.processes
    )
    plot_event_corner(
        Path(args.out_dir) / "posterior.h5", args.corner_plot or Path(args.out_dir) / "corner.png"
    )
    plot_event_asd(
        Path(args.out_dir) / "posterior.h5", args.asd_plot or Path(args.out_dir) / "asd.png"
    )


def _inference_sweep(args: argparse.Namespace) -> None:
    from pathlib import Path

    from twinflow.gw.inference.report import plot_sweep
    from twinflow.gw.inference.stage import run_sweep

    run_sweep(
        _gw_settings(args, "inference_sweep_settings_for"),
        args.model,
        args.out_dir,
        psd_paths=_psd_map(args.psd),
        processes=args.processes,
    )
    plot_sweep(args.out_dir, args.plot or Path(args.out_dir) / "corner.png")


def _inference_collect(args: argparse.Namespace) -> None:
    import json

    from twinflow.gw.inference.report import plot_efficiency, plot_pp
    from twinflow.gw.inference.stage import collect_summaries

    refused = json.loads(args.refused) if args.refused else {}
    for reason in refused.values():
        print(reason)
    collected = collect_summaries(args.summaries, args.out, refused=refused)
    if args.pp_plot:
        plot_pp(collected, args.pp_plot)
    if args.efficiency_plot:
        plot_efficiency(collected, args.efficiency_plot)
    injections = collected.get("injections")
    if injections:
        print(
            f"{injections['n']} injections: median sampling efficiency {injections['median_sampling_efficiency']:.3%}, "
            f"P-P combined p-value {injections['pp_combined_pvalue']}"
        )


def _inference_event_report(args: argparse.Namespace) -> None:
    from twinflow.gw.inference.event_figures import (
        plot_event_sample_sizes,
        plot_skymap,
        plot_whitened_strain,
    )

    plot_whitened_strain(args.posterior, args.strain_plot)
    plot_skymap(args.posterior, args.skymap_plot)
    plot_event_sample_sizes(args.summary, args.ess_plot)


def _peer(args: argparse.Namespace) -> None:
    from twinflow.cli import settings_from
    from twinflow.core.settings import ConfigError
    from twinflow.gw.inference.peer import run_peer_event
    from twinflow.gw.settings import peer_settings_for

    settings = settings_from(args)
    if args.config is not None:  # a whole config file: resolve this event's settings
        if not args.event:
            raise ConfigError("--event is needed with --config (an event of gw.inference)")
        settings = peer_settings_for(settings, args.event)
    run_peer_event(settings, args.out, psd_paths=_psd_map(args.psd), npool=args.npool)


def _peer_compare(args: argparse.Namespace) -> None:
    from twinflow.gw.inference.peer import compare_peer_event

    c = compare_peer_event(
        args.ours,
        args.dynesty,
        args.out,
        ours_summary_path=args.ours_summary,
        corner_plot=args.corner_plot,
    )
    print(
        f"{c['event']}: max JSD {c['max_jsd']} nat ({c['max_jsd_parameter']}), ln Z ours - dynesty "
        f"{c['delta_log_evidence']:.2f} +- {c['delta_log_evidence_error']:.2f}, speed-up {c['speed_up']}"
    )


def _peer_collect(args: argparse.Namespace) -> None:
    from twinflow.gw.inference.peer import collect_peer

    collected = collect_peer(args.comparisons, args.out, csv=args.csv, markdown=args.markdown)
    print(f"peer check over {len(collected['table'])} events; goals met: {collected['met']}")


def register(stages: argparse._SubParsersAction) -> None:
    from twinflow.cli import add_settings_arguments

    p = stages.add_parser(
        "dataset-domain", help="resolve the multibanded domain (nodes: auto proposes them)"
    )
    add_settings_arguments(p, "gw")
    p.add_argument("--out", required=True, help="output domain (JSON)")
    p.set_defaults(func=_dataset_domain)

    p = stages.add_parser("dataset-shard", help="simulate one shard of waveform polarisations")
    add_settings_arguments(p, "gw")
    p.add_argument("--domain", required=True, help="domain JSON from dataset-domain")
    p.add_argument("--shard", required=True, type=int, help="shard index (0 .. n-shards - 1)")
    p.add_argument("--out", required=True, help="output shard (HDF5)")
    p.set_defaults(func=_dataset_shard)

    p = stages.add_parser("dataset-index", help="index the waveform shards")
    p.add_argument("--out", required=True, help="output index (JSON)")
    p.add_argument("shards", nargs="+", help="shard files")
    p.set_defaults(func=_dataset_index)

    p = stages.add_parser(
        "dataset-plots", help="plot an example's whitened strain with token edges, and masks"
    )
    add_settings_arguments(p, "gw")
    p.add_argument("--index", required=True, help="dataset index (JSON)")
    p.add_argument("--psd", nargs="+", required=True, help="PSD banks as DETECTOR=PATH")
    p.add_argument("--strain-plot", required=True, help="output plot of the whitened strain")
    p.add_argument("--mask-plot", required=True, help="output plot of token masks")
    p.set_defaults(func=_dataset_plots)

    p = stages.add_parser("psd", help="estimate a PSD bank for one detector")
    add_settings_arguments(p, "gw")
    p.add_argument("--detector", help="detector (needed with --config)")
    p.add_argument("--out", required=True, help="output PSD bank (HDF5)")
    p.add_argument("--plot", help="output plot of the bank's ASD percentiles")
    p.set_defaults(func=_psd)

    p = stages.add_parser(
        "train", help="train the posterior model (torchrun for data-parallel training)"
    )
    add_settings_arguments(p, "gw")
    p.add_argument("--index", required=True, help="waveform dataset index (JSON)")
    p.add_argument("--psd", nargs="+", required=True, help="PSD banks, one per detector (HDF5)")
    p.add_argument(
        "--model", required=True, help="output model checkpoint (best validation epoch)"
    )
    p.add_argument("--metrics", required=True, help="output per-epoch metrics (CSV)")
    p.add_argument("--plot", required=True, help="output loss-curve plot")
    p.add_argument("--summary", help="output training summary (JSON)")
    p.add_argument(
        "--state",
        help="per-epoch training state, resumed from if present (default: beside --model)",
    )
    p.add_argument(
        "--time-budget-from",
        help="a training summary (JSON) whose total_seconds becomes a null train.time-budget",
    )
    p.set_defaults(func=_train)

    p = stages.add_parser(
        "compare-table", help="the embedding comparison's tables (transformer against svd-mlp)"
    )
    p.add_argument(
        "--manifest", required=True, help="JSON: the training, injection and sweep summaries"
    )
    p.add_argument("--out", required=True, help="output table (JSON)")
    p.add_argument("--markdown", required=True, help="output table (Markdown)")
    p.add_argument("--tsv", required=True, help="output table of the runs (TSV)")
    p.set_defaults(func=_compare_table)

    p = stages.add_parser(
        "inference",
        help="sample one event with the model and reweight it with the exact likelihood",
    )
    add_settings_arguments(p, "gw")
    p.add_argument(
        "--event", help="event name (needed with --config): injection-<i> or a configured event"
    )
    p.add_argument("--model", required=True, help="posterior-model checkpoint")
    p.add_argument(
        "--psd",
        nargs="*",
        help="PSD banks as DETECTOR=PATH (injections draw their noise from them)",
    )
    p.add_argument(
        "--out-dir", required=True, help="output folder: posterior.h5, result.json, summary.json"
    )
    p.add_argument(
        "--processes", type=int, help="likelihood worker processes (default: the usable CPUs)"
    )
    p.add_argument("--corner-plot", help="output corner plot (default: OUT_DIR/corner.png)")
    p.add_argument("--asd-plot", help="output ASD and token-mask plot (default: OUT_DIR/asd.png)")
    p.set_defaults(func=_inference)

    p = stages.add_parser(
        "inference-sweep", help="analyse one event under several analysis settings"
    )
    add_settings_arguments(p, "gw")
    p.add_argument("--model", required=True, help="posterior-model checkpoint")
    p.add_argument("--psd", nargs="*", help="PSD banks as DETECTOR=PATH")
    p.add_argument(
        "--out-dir",
        required=True,
        help="output folder: one subfolder per setting and summary.json",
    )
    p.add_argument(
        "--processes", type=int, help="likelihood worker processes (default: the usable CPUs)"
    )
    p.add_argument("--plot", help="output overlaid corner plot (default: OUT_DIR/corner.png)")
    p.set_defaults(func=_inference_sweep)

    p = stages.add_parser(
        "inference-collect", help="collect per-event summaries; P-P and efficiency plots"
    )
    p.add_argument("--out", required=True, help="output summary of all events (JSON)")
    p.add_argument("--pp-plot", help="output P-P plot over the injections")
    p.add_argument("--efficiency-plot", help="output histogram of the sampling efficiency")
    p.add_argument(
        "--refused",
        help="JSON map event -> reason of the configured events not analysed (out of the prior)",
    )
    p.add_argument("summaries", nargs="+", help="per-event summary.json files")
    p.set_defaults(func=_inference_collect)

    p = stages.add_parser(
        "inference-event-report",
        help="a real event's figures: whitened strain with the maximum-likelihood signal, sky map, ESS",
    )
    p.add_argument("--posterior", required=True, help="the event's posterior.h5")
    p.add_argument("--summary", required=True, help="the event's summary.json")
    p.add_argument("--strain-plot", required=True, help="output whitened-strain figure")
    p.add_argument("--skymap-plot", required=True, help="output Mollweide sky map")
    p.add_argument("--ess-plot", required=True, help="output network-vs-final ESS figure")
    p.set_defaults(func=_inference_event_report)

    p = stages.add_parser(
        "peer", help="run bilby's dynesty on one event with our data, prior and likelihood"
    )
    add_settings_arguments(p, "gw")
    p.add_argument("--event", help="event name (needed with --config): an event of gw.inference")
    p.add_argument("--psd", nargs="*", help="PSD banks as DETECTOR=PATH (for injections)")
    p.add_argument("--out", required=True, help="output dynesty result (bilby Result, JSON)")
    p.add_argument(
        "--npool", type=int, help="dynesty's likelihood processes (default: peer.npool)"
    )
    p.set_defaults(func=_peer)

    p = stages.add_parser(
        "peer-compare", help="compare our posterior with dynesty's: JSDs, ln Z, wall times"
    )
    p.add_argument("--ours", required=True, help="our bilby Result (inference result.json)")
    p.add_argument("--ours-summary", help="our summary.json (checks the phase marginalisation)")
    p.add_argument("--dynesty", required=True, help="dynesty's bilby Result (from `gw peer`)")
    p.add_argument("--out", required=True, help="output comparison (JSON)")
    p.add_argument("--corner-plot", help="output overlaid corner plot")
    p.set_defaults(func=_peer_compare)

    p = stages.add_parser("peer-collect", help="gather the peer comparisons into one table")
    p.add_argument("--out", required=True, help="output peer.json")
    p.add_argument("--csv", help="output table (CSV)")
    p.add_argument("--markdown", help="output table (markdown)")
    p.add_argument("comparisons", nargs="+", help="per-event comparison JSON files")
    p.set_defaults(func=_peer_collect)
