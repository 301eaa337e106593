# Helpers shared by the workflow files: config validation, the settings passed to each
# stage through params:, and output paths. Rules stay thin: they wire paths and params to stages.
import json

from snakemake.utils import validate

validate(config, "../schemas/config.schema.yaml")


RESULTS = "results"


def as_json(settings):
    """The settings a stage runs with, as the JSON string passed to `twinflow ... --settings`."""
    return json.dumps(settings)
