"""The configuration file as the workflow sees it: checked against the schema, defaults filled.

The Snakefile validates ``config`` with ``snakemake.utils.validate``; a stage run by hand with
``--config FILE`` goes through :func:`load_config`, the same schema (draft 2020-12, with its
defaults), so a misspelt key or a value out of its physical range is refused the same way,
with one line naming the key. Cross-field checks belong to each branch's settings layer and
run after this (see ``twinflow.cli``).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from twinflow.core.settings import ConfigError, load_yaml, require, select_section

#: The schema files (config.schema.yaml and one per section, referenced from it), shipped
#: with the package so an installed twinflow checks configs like a source checkout does.
SCHEMA_DIR = Path(__file__).resolve().parents[1] / "schemas"


def _key(path: Any) -> str:
    return ".".join(str(p) for p in path) or "(top level)"


def schema(name: str = "config") -> dict:
    """Return the schema ``<name>.schema.yaml`` with every ``$ref`` to a sibling file inlined.

    Inlining matters: jsonschema's recipe for filling in defaults (which
    ``snakemake.utils.validate`` uses too) stops at a ``$ref``, so keys nested in a referenced
    file (``gw.psd.overlap``, ``glitch.qtransform.image-size``) would stay missing.
    """

    def inline(node):
        if isinstance(node, dict):
            if "$ref" in node:
                referenced = load_yaml(SCHEMA_DIR / node["$ref"])
                referenced.pop("$schema", None)
                rest = {k: v for k, v in node.items() if k != "$ref"}
                return inline({**referenced, **rest})
            return {k: inline(v) for k, v in node.items()}
        if isinstance(node, list):
            return [inline(v) for v in node]
        return node

    return inline(load_yaml(SCHEMA_DIR / f"{name}.schema.yaml"))


def _validator(schema_dict: dict):
    """A draft 2020-12 validator that fills in defaults as it goes (jsonschema's recipe)."""
    import jsonschema

    base = jsonschema.validators.validator_for(schema_dict)

    def fill_defaults(validator, properties, instance, schema_node) -> Iterator:
        if isinstance(instance, dict):
            for key, sub in properties.items():
                if key not in instance and "default" in sub:
                    instance[key] = copy.deepcopy(sub["default"])
        yield from base.VALIDATORS["properties"](validator, properties, instance, schema_node)

    return jsonschema.validators.extend(base, {"properties": fill_defaults})(schema_dict)


def validate_config(config: dict, source: str = "config", schema_name: str = "config") -> dict:
    """Fill in the schema's defaults in ``config`` (in place) and check it; return it.

    Raises :class:`ConfigError` with one line for the first error: the dotted key, the value
    and what the schema requires.
    """
    errors = sorted(
        _validator(schema(schema_name)).iter_errors(config),
        key=lambda e: list(map(str, e.absolute_path)),
    )
    if errors:
        error = errors[0]
        while error.context:  # oneOf/anyOf: the deepest cause says most
            error = max(error.context, key=lambda e: len(e.absolute_path))
        key = _key(error.absolute_path)
        if error.validator == "additionalProperties":
            raise ConfigError(f"{source}: {key}: {error.message} (misspelt key?)")
        raise ConfigError(f"{source}: {key} = {error.instance!r} is invalid: {error.message}")
    return config


def load_config(path: str | Path) -> dict:
    """Return the YAML config at ``path``, checked against the schema, with defaults filled."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--config {str(path)!r}: no such file")
    return validate_config(load_yaml(path), source=str(path))


def load_settings(settings: str | None, config: str | None, section: str) -> dict:
    """Return the settings of one stage, from a JSON string or from a config file's section.

    Snakemake rules pass ``settings`` (JSON, exactly their ``params:``); by hand, a user
    points ``config`` at a YAML file such as ``config/config.yaml``: it is checked against the
    workflow's schema (defaults filled in, as the Snakefile does) and the stage reads its
    ``section`` (dotted, e.g. ``gw.psd``).
    """
    if settings is not None:
        try:
            value = json.loads(settings)
        except json.JSONDecodeError as err:
            raise ConfigError(f"--settings is not valid JSON: {err}") from None
        require(isinstance(value, dict), "--settings", settings, "a JSON object")
        return value
    if config is None:
        raise ConfigError("give either --settings (JSON) or --config (a YAML file)")
    return select_section(load_config(config), section)
