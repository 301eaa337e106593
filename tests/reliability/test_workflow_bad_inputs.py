"""Bad settings stop `snakemake` when it parses the Snakefile, before any job runs."""

from __future__ import annotations

import pytest

from tests.conftest import snakemake
from tests.reliability.helpers import config_with, write_config

CASES = [
    # a cross-field check (Nyquist) that used to run only inside the PSD job
    ("gw-fmax-above-nyquist", ("gw", "maximum-frequency"), 600, "600"),
    # an unphysical prior that used to train silently
    (
        "gw-negative-distance",
        ("gw", "dataset", "prior", "luminosity_distance", "minimum"),
        -200,
        "-200",
    ),
    # a name that would have written outside its results folder
    ("gw-event-named-dotdot", ("gw", "inference", "events"), {"..": {"trigger-time": 1.0}}, ".."),
]


@pytest.mark.parametrize(
    "path, value, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_setting_stops_the_workflow_at_parse_time(tmp_path, path, value, expected):
    config = write_config(tmp_path, config_with(path, value))
    result = snakemake(tmp_path, "-n", configfiles=[config], check=False, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "ConfigError" in output and expected in output, output[-3000:]
    assert not (tmp_path / "results").exists()
