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


def _validator(schema_path: Path):
    import jsonschema
    from referencing import Registry, Resource

    def retrieve(uri: str) -> Resource:
        name = uri.rsplit("/", 1)[-1]
        return Resource.from_contents(load_yaml(schema_path.parent / name))

    schema = load_yaml(schema_path)
    registry = Registry(retrieve=retrieve)
    validator_class = jsonschema.validators.validator_for(schema)

    def fill_defaults(validator, properties, instance, schema) -> Iterator:
        # jsonschema's recipe (as snakemake's validate): set defaults, then validate.
        if isinstance(instance, dict):
            for key, sub in properties.items():
                if "$ref" in sub and "default" not in sub:
                    continue
                if key not in instance and "default" in sub:
                    instance[key] = copy.deepcopy(sub["default"])
        yield from validator_class.VALIDATORS["properties"](
            validator, properties, instance, schema
        )

    extended = jsonschema.validators.extend(validator_class, {"properties": fill_defaults})
    return extended(schema, registry=registry)


def _key(path: Any) -> str:
    return ".".join(str(p) for p in path) or "(top level)"


def validate_config(config: dict, source: str = "config", schema: str = "config") -> dict:
    """Fill in the schema's defaults in ``config`` (in place) and check it; return it.

    Raises :class:`ConfigError` with one line for the first error: the dotted key, the value
    and what the schema says would be valid.
    """
    validator = _validator(SCHEMA_DIR / f"{schema}.schema.yaml")
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        # The deepest error of the first failing key says most (oneOf/anyOf nest the cause).
        error = errors[0]
        while error.context:
            error = min(error.context, key=lambda e: len(e.absolute_path) * -1)
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
