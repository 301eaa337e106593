"""The ``anomaly`` section with the schema's defaults filled in (for runs by hand with --config).

The workflow gets the defaults from ``snakemake.utils.validate``; a by-hand run of the CLI
with ``--config`` uses the same schema file through :func:`with_defaults`.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path

from twinflow.core.config import SCHEMA_DIR
from twinflow.core.settings import load_yaml

SCHEMA = SCHEMA_DIR / "anomaly.schema.yaml"


def _fill(node: dict, schema: Mapping) -> dict:
    for key, sub in schema.get("properties", {}).items():
        if key not in node and "default" in sub:
            node[key] = copy.deepcopy(sub["default"])
        if isinstance(node.get(key), dict) and sub.get("type") == "object":
            _fill(node[key], sub)
    return node


def with_defaults(section: Mapping, schema_path: str | Path = SCHEMA) -> dict:
    """Return ``section`` with every missing key set to the schema's default."""
    return _fill(copy.deepcopy(dict(section)), load_yaml(schema_path))
