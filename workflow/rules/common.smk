# Helpers shared by the workflow files: config validation, the settings passed to each
# stage through params:, and output paths. Rules stay thin: they wire paths and params to stages.
import json
import os
import sys

from twinflow.core.config import validate_config

# The schema check with its defaults, as `twinflow ... --config` does it: one line naming the
# key and value on a bad setting. Each branch's cross-field checks run in its rule file.
validate_config(config, source="config")


RESULTS = "results"


# Every stage is a `twinflow ...` command (torchrun too, for multi-GPU training). Put the bin
# folder of the Python running Snakemake first on PATH, so that the commands resolve to this
# installation when Snakemake was started as `.venv/bin/snakemake` without activating the
# environment. Jobs inherit it (cluster jobs rerun this file with the same Python); with
# `--sdm conda` the job's environment is activated inside the shell command and comes first.
envvars:
    "PATH",


_BINDIR = os.path.dirname(sys.executable)
if os.environ.get("PATH", "").split(os.pathsep)[0] != _BINDIR:
    os.environ["PATH"] = _BINDIR + os.pathsep + os.environ.get("PATH", "")


def as_json(settings):
    """The settings a stage runs with, as the JSON string passed to `twinflow ... --settings`."""
    return json.dumps(settings)
