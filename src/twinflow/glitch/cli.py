"""glitch: Glitch Flow translation, subtraction and the VAE glitch detector."""

from __future__ import annotations

import argparse


def _settings(args: argparse.Namespace, stage: str) -> dict:
    from twinflow.cli import settings_from
    from twinflow.glitch.settings import stage_settings

    settings = settings_from(args)
    if args.config is not None:  # a whole config file: resolve this stage's settings
        settings = stage_settings(settings, stage)
    return settings


def _simulate(args: argparse.Namespace) -> None:
    from twinflow.glitch.data import simulate_dataset_shard

    s = _settings(args, "simulate")
    simulate_dataset_shard(s["data"], args.shard, args.out, image_band=s["image-band"])


def _load(args: argparse.Namespace) -> None:
    from twinflow.glitch.detector_data import load_detector_data

    load_detector_data(_settings(args, "load")["data"], args.out)


def _images(args: argparse.Namespace) -> None:
    from twinflow.glitch.qtransform import build_images

    s = _settings(args, "images")
    build_images(s["data"], s["qtransform"], args.shards, args.out)


def _train_translation(args: argparse.Namespace) -> None:
    from twinflow.glitch.train import train_translation

    train_translation(
        _settings(args, "train-translation"),
        args.images,
        args.out,
        args.metrics,
        args.plot,
        state=args.state,
    )


def _subtract(args: argparse.Namespace) -> None:
    from twinflow.glitch.subtraction import run_subtraction

    run_subtraction(
        _settings(args, "subtract"), args.images, args.model, args.metrics, args.gallery
    )


def _train_vae(args: argparse.Namespace) -> None:
    from twinflow.glitch.vae import train_vae

    train_vae(
        _settings(args, "train-vae"),
        args.images,
        args.out,
        args.metrics,
        args.plot,
        state=args.state,
    )


def _score_vae(args: argparse.Namespace) -> None:
    from twinflow.glitch.vae_scores import score_vae

    score_vae(
        _settings(args, "score-vae"),
        args.images,
        args.model,
        args.metrics,
        args.roc,
        args.reconstructions,
        args.latent,
    )


def register(stages: argparse._SubParsersAction) -> None:
    from twinflow.cli import add_settings_arguments

    p = stages.add_parser(
        "simulate", help="simulate one shard of the synthetic strain + auxiliary dataset"
    )
    add_settings_arguments(p, "glitch")
    p.add_argument("--shard", type=int, required=True, help="shard index (0 .. n-shards - 1)")
    p.add_argument("--out", required=True, help="output shard (HDF5)")
    p.set_defaults(func=_simulate)

    p = stages.add_parser(
        "load",
        help="read strain and auxiliary channels from GWF/HDF5 files into one shard of windows",
    )
    add_settings_arguments(p, "glitch")
    p.add_argument("--out", required=True, help="output shard (HDF5)")
    p.set_defaults(func=_load)

    p = stages.add_parser(
        "images", help="Q-transform images, seeded split and training-split normalisation"
    )
    add_settings_arguments(p, "glitch")
    p.add_argument("--shards", nargs="+", required=True, help="all dataset shards, in order")
    p.add_argument("--out", required=True, help="output images file (HDF5)")
    p.set_defaults(func=_images)

    p = stages.add_parser("train-translation", help="train the aux -> strain translation model")
    add_settings_arguments(p, "glitch")
    p.add_argument("--images", required=True)
    p.add_argument("--out", required=True, help="output model checkpoint")
    p.add_argument("--metrics", required=True, help="output per-epoch metrics (CSV)")
    p.add_argument("--plot", required=True, help="output loss-curve plot")
    p.add_argument("--state", help="resumable training state (default: beside --out)")
    p.set_defaults(func=_train_translation)

    p = stages.add_parser(
        "subtract", help="generate strain Q-plots of the test split, subtract, score"
    )
    add_settings_arguments(p, "glitch")
    p.add_argument("--images", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--metrics", required=True, help="output metrics.json")
    p.add_argument("--gallery", required=True, help="output gallery plot")
    p.set_defaults(func=_subtract)

    p = stages.add_parser("train-vae", help="train the VAE glitch detector on clean Q-plots")
    add_settings_arguments(p, "glitch")
    p.add_argument("--images", required=True)
    p.add_argument("--out", required=True, help="output model checkpoint")
    p.add_argument("--metrics", required=True, help="output per-epoch metrics (CSV)")
    p.add_argument("--plot", required=True, help="output loss-curve plot")
    p.add_argument("--state", help="resumable training state (default: beside --out)")
    p.set_defaults(func=_train_vae)

    p = stages.add_parser(
        "score-vae", help="score the test split with the VAE: ROC, reconstructions, latent plot"
    )
    add_settings_arguments(p, "glitch")
    p.add_argument("--images", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--metrics", required=True, help="output VAE metrics (JSON)")
    p.add_argument("--roc", required=True)
    p.add_argument("--reconstructions", required=True)
    p.add_argument("--latent", required=True)
    p.set_defaults(func=_score_vae)
