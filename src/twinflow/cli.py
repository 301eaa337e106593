"""The ``twinflow`` command: one subcommand per stage, ``twinflow BRANCH STAGE ...``.

Snakemake rules call these with ``--settings`` (their ``params:`` as JSON); by hand, pass
``--config config/config.yaml`` and the stage reads its own section. Each branch adds its
stages in ``twinflow.<branch>.cli.register``.

Errors in settings or inputs (:class:`~twinflow.core.settings.ConfigError`) end the command
with one clear line and exit status 2, before any output is written.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from twinflow.core.config import load_settings
from twinflow.core.settings import ConfigError

BRANCHES = ("gw", "glitch", "anomaly")


def add_settings_arguments(parser: argparse.ArgumentParser, section: str) -> None:
    """Add ``--settings`` / ``--config`` to a stage's parser; ``section`` is its config section."""
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument(
        "--settings", help="the stage's settings as a JSON object (what Snakemake passes)"
    )
    group.add_argument("--config", help=f"a YAML config file; its section {section!r} is used")
    parser.set_defaults(section=section)


def settings_from(args: argparse.Namespace) -> dict:
    """Return the settings a stage runs with, from ``--settings`` or ``--config``.

    A ``--config`` file gets what the Snakefile gives it: the schema check with its defaults,
    then the branch's cross-field checks (``check_config`` of its settings layer).
    """
    settings = load_settings(args.settings, args.config, args.section)
    if args.config is not None:
        branch = args.section.split(".")[0]
        _check_branch_config(branch, settings if "." not in args.section else None, args.config)
    return settings


def _check_branch_config(branch: str, section: dict | None, config_path: str) -> None:
    """Run the branch's cross-field checks on its whole section of the config file."""
    from twinflow.core.config import load_config

    if section is None:
        section = load_config(config_path)[branch]
    for name in ("validation", "settings"):
        try:
            module = importlib.import_module(f"twinflow.{branch}.{name}")
        except ModuleNotFoundError:
            continue
        if hasattr(module, "check_config"):
            module.check_config(section)
            return


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="twinflow", description=__doc__.splitlines()[0])
    branches = parser.add_subparsers(dest="branch", required=True)
    for name in BRANCHES:
        try:
            module = importlib.import_module(f"twinflow.{name}.cli")
        except ModuleNotFoundError as err:
            if err.name != f"twinflow.{name}.cli":
                raise
            continue
        sub = branches.add_parser(name, help=(module.__doc__ or "").splitlines()[0])
        module.register(sub.add_subparsers(dest="stage", required=True))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except ConfigError as err:  # includes CheckpointError
        print(f"twinflow {args.branch} {args.stage}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
