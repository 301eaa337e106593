"""Bad real-event inputs: each stops with one line naming the event key and the file or value.

Uses the GWOSC files in ../shared/data/gw/strain (skipped where that folder is absent).
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from twinflow.core.settings import ConfigError
from twinflow.gw.inference.strain import load_strain_event

ANALYSIS = {
    "detectors": ["H1", "L1"],
    "duration": 4,
    "sampling-frequency": 1024,
    "minimum-frequency": 20,
    "maximum-frequency": 256,
}


@pytest.fixture(scope="module")
def gw170104(shared_data):
    folder = shared_data / "gw" / "strain"
    catalogue = json.loads((folder / "events.json").read_text())["GW170104"]
    return {
        "trigger-time": catalogue["tevent"],
        "data-dict": {d: str(folder / catalogue[f"fn_{d}"]) for d in ("H1", "L1")},
    }


def load(event, **analysis):
    settings = {
        "event": event,
        "analysis": {**ANALYSIS, **analysis},
        "post-trigger-duration": 2.0,
        "tukey-roll-off": 0.4,
        "psd": {"window": "hann", "overlap": 0.5, "average": "median"},
    }
    return load_strain_event("GW170104", settings, log=lambda *_: None)


def one_line_naming(err, *texts):
    message = str(err.value)
    assert "\n" not in message, message
    for text in texts:
        assert text in message, message


def test_a_strain_file_that_is_not_hdf5(gw170104, tmp_path):
    fake = tmp_path / "H-H1_fake-32.hdf5"
    fake.write_bytes(np.random.default_rng(1).bytes(4096))
    event = {**gw170104, "data-dict": {**gw170104["data-dict"], "H1": str(fake)}}
    with pytest.raises(ConfigError) as err:
        load(event)
    one_line_naming(err, str(fake))


def test_a_truncated_strain_file(gw170104, tmp_path):
    cut = tmp_path / "H-H1-cut-32.hdf5"
    data = open(gw170104["data-dict"]["H1"], "rb").read()
    cut.write_bytes(data[: len(data) // 3])
    event = {**gw170104, "data-dict": {**gw170104["data-dict"], "H1": str(cut)}}
    with pytest.raises(ConfigError) as err:
        load(event)
    one_line_naming(err, str(cut))


def test_the_files_of_two_detectors_swapped(gw170104):
    swapped = {"H1": gw170104["data-dict"]["L1"], "L1": gw170104["data-dict"]["H1"]}
    with pytest.raises(ConfigError) as err:
        load({**gw170104, "data-dict": swapped})
    one_line_naming(err, "data-dict.H1", "holds L1's")


def test_a_trigger_time_outside_the_file(gw170104):
    with pytest.raises(ConfigError) as err:
        load({**gw170104, "trigger-time": gw170104["trigger-time"] + 1000})
    one_line_naming(err, "trigger-time", "outside")


def test_too_little_off_source_data_for_the_psd(gw170104):
    # A 16 s segment in a 32 s file leaves no off-source stretch of 16 s for Welch.
    with pytest.raises(ConfigError) as err:
        load(gw170104, duration=16)
    one_line_naming(err, "off-source")


def test_a_file_copied_under_another_name_still_reads(gw170104, tmp_path):
    # The check reads the file's own metadata, not its name.
    copy = tmp_path / "renamed.hdf5"
    shutil.copy(gw170104["data-dict"]["H1"], copy)
    data = load({**gw170104, "data-dict": {**gw170104["data-dict"], "H1": str(copy)}})
    assert data.detectors == ("H1", "L1")


def test_a_truncated_gwf_strain_file_is_named_before_the_frame_library_reads_it(tmp_path):
    """The frame library crashes the process on a truncated GWF file: it is refused first."""
    from gwpy.timeseries import TimeSeries

    from twinflow.gw.strain_sources import read_strain

    whole = tmp_path / "H-H1_TEST-1000000000-8.gwf"
    series = np.random.default_rng(3).standard_normal(8 * 256)
    TimeSeries(series, t0=1e9, sample_rate=256, name="H1:TEST").write(str(whole), format="gwf")
    assert len(read_strain(whole, "H1:TEST")) == len(series)
    cut = tmp_path / "H-H1_CUT-1000000000-8.gwf"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(ConfigError) as err:
        read_strain(cut, "H1:TEST")
    one_line_naming(err, str(cut), "truncated")


# --- the same inputs stop the workflow when it parses the config, before any job -------------


def parse_time_error(event, **gw) -> str:
    """Return the one-line error ``check_config`` (the Snakefile's check) gives for ``event``."""
    from tests.reliability.helpers import config_with
    from twinflow.core.config import validate_config
    from twinflow.gw.validation import check_config

    config = config_with(("gw", "inference", "events"), {"GW170104": event})
    config["gw"].update(gw)
    with pytest.raises(ConfigError) as err:
        check_config(validate_config(config)["gw"])
    one_line_naming(err, "inference.events.GW170104")
    return str(err.value)


def test_parse_time_a_strain_file_that_is_not_hdf5(gw170104, tmp_path):
    fake = tmp_path / "H-H1_fake-32.hdf5"
    fake.write_bytes(np.random.default_rng(1).bytes(4096))
    message = parse_time_error(
        {**gw170104, "data-dict": {**gw170104["data-dict"], "H1": str(fake)}}
    )
    assert "not an HDF5 file" in message and str(fake) in message


def test_parse_time_a_trigger_time_outside_the_file(gw170104):
    message = parse_time_error({**gw170104, "trigger-time": gw170104["trigger-time"] + 1000})
    assert "trigger-time" in message and "outside H1's file" in message


def test_parse_time_a_detector_missing(gw170104, tmp_path):
    # no file for an analysed detector
    message = parse_time_error({**gw170104, "data-dict": {"H1": gw170104["data-dict"]["H1"]}})
    assert "missing L1" in message
    # a file that holds another detector's strain
    swapped = {"H1": gw170104["data-dict"]["L1"], "L1": gw170104["data-dict"]["L1"]}
    message = parse_time_error({**gw170104, "data-dict": swapped})
    assert "data-dict.H1" in message and "holds L1's" in message


def test_parse_time_too_little_off_source_data(gw170104):
    # 16 s segments in the 32 s file: neither side holds 16 s for the Welch PSD
    message = parse_time_error(gw170104, duration=16)
    assert "off-source" in message and "psd-dict" in message
