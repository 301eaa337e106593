"""Bad input files a user points the glitch and anomaly branches at: not the expected format,
truncated, or without the expected table. Each ends with one line naming the file (exit status
2 through the CLI), before anything is written; the user's file is never moved."""

from __future__ import annotations

import copy

import h5py
import numpy as np
import pytest

from tests.reliability.helpers import GOOD_CONFIG, run_cli, write_config
from twinflow.core.settings import ConfigError

LHCO_COLUMNS = (
    "pxj1 pyj1 pzj1 mj1 tau1j1 tau2j1 tau3j1 pxj2 pyj2 pzj2 mj2 tau1j2 tau2j2 tau3j2 label"
).split()


def lhco_like(path, n=2000):
    """A pandas 'fixed'-format frame as the LHCO R&D files store it, written with h5py."""
    values = np.random.default_rng(0).uniform(1, 500, size=(n, len(LHCO_COLUMNS)))
    values[:, -1] = np.arange(n) % 2
    with h5py.File(path, "w") as f:
        group = f.create_group("df")
        group.attrs["nblocks"] = 1
        group.create_dataset("block0_items", data=np.array(LHCO_COLUMNS, dtype="S"))
        group.create_dataset("block0_values", data=values)


def not_hdf5(path):
    path.write_bytes(np.random.default_rng(1).bytes(4096))


def truncated(path):
    lhco_like(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def another_key(path):
    with h5py.File(path, "w") as f:
        f.create_dataset("events", data=np.zeros((10, 3)))


@pytest.mark.parametrize(
    "make, expected",
    [(not_hdf5, "not an HDF5 file"), (truncated, "damaged"), (another_key, "has no key 'df'")],
)
def test_a_bad_lhco_file_stops_the_events_stage(tmp_path, make, expected):
    lhco = tmp_path / "events_anomalydetection.h5"
    make(lhco)
    before = lhco.read_bytes()
    config = copy.deepcopy(GOOD_CONFIG)
    config["anomaly"]["data"].update({"source": "files", "files": {"data": str(lhco)}})
    out = tmp_path / "out" / "events.h5"
    status, message = run_cli(
        ["anomaly", "events", "--config", str(write_config(tmp_path, config)), "--out", str(out)]
    )
    assert status == 2, message
    assert len(message.strip().splitlines()) == 1 and "Traceback" not in message, message
    assert str(lhco) in message and expected in message, message
    assert not (tmp_path / "out").exists() and lhco.read_bytes() == before


# --------------------------------------------------------------------------------------------
# glitch detector data (source: files)

FS, T0, SPAN = 256, 1_200_000_000.0, 16
CHANNELS = ["H1:GDS-CALIB_STRAIN", "H1:PEM-CS_ACC_A"]


@pytest.fixture(scope="module")
def detector_files(tmp_path_factory):
    """A gwpy-written HDF5 and GWF file of two channels, and a trigger list."""
    from gwpy.timeseries import TimeSeries, TimeSeriesDict

    folder = tmp_path_factory.mktemp("detector")
    rng = np.random.default_rng(2)
    data = TimeSeriesDict(
        {
            name: TimeSeries(rng.standard_normal(SPAN * FS), t0=T0, sample_rate=FS, name=name)
            for name in CHANNELS
        }
    )
    paths = {}
    for fmt, suffix in (("hdf5", ".h5"), ("gwf", ".gwf")):
        paths[fmt] = folder / f"H-H1_TEST-{int(T0)}-{SPAN}{suffix}"
        data.write(str(paths[fmt]), format=fmt)
    paths["triggers"] = folder / "triggers.csv"
    paths["triggers"].write_text(f"time,frequency,snr\n{T0 + 8},40,20\n")
    return paths


def load_files(tmp_path, paths, triggers):
    from twinflow.glitch.detector_data import load_detector_data

    data = copy.deepcopy(GOOD_CONFIG["glitch"]["data"])
    data.update({"source": "files", "sampling-frequency": FS, "duration": 2, "n-auxiliary": 1})
    data["files"].update(
        {
            "paths": [str(p) for p in paths],
            "strain-channel": CHANNELS[0],
            "aux-channels": CHANNELS[1:],
            "triggers": str(triggers),
            "windows": "triggers",
        }
    )
    out = tmp_path / "out" / "shard-0.h5"
    with pytest.raises(ConfigError) as err:
        load_detector_data(data, out, log=lambda *a: None)
    assert not out.parent.exists()
    message = str(err.value)
    assert "\n" not in message, message
    return message


@pytest.mark.parametrize("fmt", ["hdf5", "gwf"])
def test_a_truncated_detector_data_file_is_named(tmp_path, detector_files, fmt):
    bad = tmp_path / detector_files[fmt].name
    data = detector_files[fmt].read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    message = load_files(tmp_path, [bad], detector_files["triggers"])
    assert str(bad) in message and "files.paths" in message, message
    assert bad.is_file()


@pytest.mark.parametrize(
    "name, content, expected",
    [
        ("triggers.csv", b"\xff\xfe\x00binary\x00\x81", "not a CSV table"),
        ("triggers.csv", b"", "not a CSV table"),
        ("triggers.h5", b"time,frequency,snr\n1,2,3\n", "not an HDF5 file"),
    ],
    ids=["csv-binary", "csv-empty", "hdf5-that-is-text"],
)
def test_a_bad_trigger_list_is_named(tmp_path, detector_files, name, content, expected):
    triggers = tmp_path / name
    triggers.write_bytes(content)
    message = load_files(tmp_path, [detector_files["hdf5"]], triggers)
    assert str(triggers) in message and "files.triggers" in message, message
    assert expected in message, message
