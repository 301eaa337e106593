"""Detector data in (``source: files``): channels read by name from files gwpy itself wrote
(HDF5 and GWF), windows on a trigger list or a grid, the off-source PSD against scipy's median
Welch, and the one-line errors for bad input."""

from __future__ import annotations

import copy

import h5py
import numpy as np
import pytest
import scipy.signal

from twinflow.core.settings import ConfigError
from twinflow.glitch.data import sine_gaussian
from twinflow.glitch.detector_data import (
    load_detector_data,
    off_source_psd,
    read_stretch,
)

FS = 512
T0 = 1_200_000_000.0
SPAN = 64  # s
STRAIN = "H1:GDS-CALIB_STRAIN"
AUX = ["H1:PEM-CS_ACC_A", "H1:ASC-X_PIT"]
TRIGGER_TIMES = [T0 + 10.3, T0 + 30.0, T0 + 50.7]


def _channels(seed: int = 0) -> dict[str, np.ndarray]:
    """Strain (white noise through a low-pass, so its PSD is not flat) and two witnesses, with a
    sine-Gaussian at each trigger time in the first witness and, weaker, in strain."""
    rng = np.random.default_rng(seed)
    n = SPAN * FS
    t = T0 + np.arange(n) / FS
    sos = scipy.signal.butter(4, 60, fs=FS, output="sos")
    strain = scipy.signal.sosfilt(sos, rng.standard_normal(n)) + 0.1 * rng.standard_normal(n)
    aux = rng.standard_normal((2, n))
    for tt in TRIGGER_TIMES:
        glitch = sine_gaussian(t - tt, 40.0, 8.0, 0.0)
        aux[0] += 30 * glitch
        strain += 10 * glitch
    return {STRAIN: strain, AUX[0]: aux[0], AUX[1]: aux[1]}


def _write(path, channels: dict[str, np.ndarray], fmt: str, rate: float = FS) -> None:
    from gwpy.timeseries import TimeSeries, TimeSeriesDict

    data = TimeSeriesDict()
    for name, values in channels.items():
        data[name] = TimeSeries(values, t0=T0, sample_rate=rate, name=name, channel=name)
    data.write(str(path), format=fmt)


@pytest.fixture(scope="module")
def detector_files(tmp_path_factory):
    """(channels, HDF5 path, GWF path, trigger CSV, trigger HDF5) written by gwpy / h5py."""
    folder = tmp_path_factory.mktemp("detector-data")
    channels = _channels()
    _write(folder / "H-H1_TEST-1200000000-64.h5", channels, "hdf5")
    _write(folder / "H-H1_TEST-1200000000-64.gwf", channels, "gwf")
    csv = folder / "triggers.csv"
    rows = [f"{t:.4f},{40.0 + i},{20.0 + i}" for i, t in enumerate(TRIGGER_TIMES)]
    csv.write_text("time,frequency,snr\n" + "\n".join(rows) + "\n")
    table = np.array(
        [(t, 40.0 + i, 20.0 + i) for i, t in enumerate(TRIGGER_TIMES)],
        dtype=[("time", float), ("frequency", float), ("snr", float)],
    )
    trig_h5 = folder / "triggers.h5"
    with h5py.File(trig_h5, "w") as f:
        f.create_dataset("triggers", data=table)
    return (
        channels,
        folder / "H-H1_TEST-1200000000-64.h5",
        folder / "H-H1_TEST-1200000000-64.gwf",
        csv,
        trig_h5,
    )


def _data_settings(glitch_config: dict, paths, triggers, windows="triggers") -> dict:
    data = copy.deepcopy(glitch_config["data"])
    data.update({"source": "files", "sampling-frequency": FS, "duration": 2, "n-auxiliary": 2})
    data["files"].update(
        {
            "paths": [str(p) for p in paths],
            "strain-channel": STRAIN,
            "aux-channels": list(AUX),
            "triggers": None if triggers is None else str(triggers),
            "windows": windows,
        }
    )
    return data


@pytest.mark.parametrize("which", ["hdf5", "gwf"])
def test_trigger_windows_are_the_data_around_each_trigger(
    detector_files, glitch_config, tmp_path, which
):
    channels, h5, gwf, csv, trig_h5 = detector_files
    path, triggers = (h5, csv) if which == "hdf5" else (gwf, trig_h5)
    data = _data_settings(glitch_config, [path], triggers)
    out = tmp_path / "shard-0.h5"
    load_detector_data(data, out)
    with h5py.File(out) as f:
        strain, aux = f["strain"][()], f["aux"][()]
        has_glitch, gps = f["has_glitch"][()], f["gps_start"][()]
        snr, times = f["glitch_snr"][()], f["glitch_time"][()]
        assert not f.attrs["truth"]
        assert f["strain_psd"].shape == (FS + 1,) and f["aux_psd"].shape == (2, FS + 1)
    n = 2 * FS
    assert has_glitch.sum() == len(TRIGGER_TIMES) and strain.shape[1:] == (n,)
    assert aux.shape[1:] == (2, n)
    for j, tt in enumerate(TRIGGER_TIMES):
        i = int(round((tt - 1 - T0) * FS))
        np.testing.assert_allclose(strain[j], channels[STRAIN][i : i + n], rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(aux[j, 0], channels[AUX[0]][i : i + n], rtol=1e-6, atol=1e-6)
        assert snr[j] == 20.0 + j and abs(times[j]) < 1 / FS
    # One window back as a gwpy TimeSeriesDict, by channel name and GPS time.
    from twinflow.glitch.data import sample_timeseries

    series = sample_timeseries(out, 1)
    assert list(series) == [STRAIN, *AUX]
    assert float(series[AUX[1]].t0.value) == pytest.approx(gps[1])
    np.testing.assert_allclose(series[STRAIN].value, strain[1])
    # Clean windows keep clear of every trigger's window and its padding (1 s).
    for start in gps[~has_glitch]:
        assert all(start + 2 <= tt - 2 or start >= tt + 2 for tt in TRIGGER_TIMES)
    assert (~has_glitch).sum() >= 10


def test_grid_windows_label_the_loudest_trigger_inside(detector_files, glitch_config, tmp_path):
    _, h5, _, csv, _ = detector_files
    data = _data_settings(glitch_config, [h5], csv, windows="grid")
    data["files"]["grid-stride"] = 4.0
    out = tmp_path / "grid.h5"
    load_detector_data(data, out)
    with h5py.File(out) as f:
        gps, has_glitch = f["gps_start"][()], f["has_glitch"][()]
    np.testing.assert_allclose(gps, T0 + 4.0 * np.arange(16))
    expected = [any(s <= tt < s + 2 for tt in TRIGGER_TIMES) for s in gps]
    assert list(has_glitch) == expected


def test_off_source_psd_equals_scipy_median_welch_of_the_off_source_data(detector_files):
    channels, h5, *_ = detector_files
    stretch = read_stretch(h5, STRAIN, AUX, FS)
    n = 2 * FS
    # Exclude the first 20 s: the PSD must be scipy's median Welch of the rest alone.
    psd, aux_psd, used = off_source_psd([stretch], [(T0 - 5, T0 + 20)], n, FS)
    rest = channels[STRAIN][20 * FS :]
    _, reference = scipy.signal.welch(
        rest, FS, window="hann", nperseg=n, noverlap=n // 2, average="median"
    )
    np.testing.assert_allclose(psd, reference, rtol=1e-10)
    _, reference_aux = scipy.signal.welch(
        channels[AUX[1]][20 * FS :], FS, nperseg=n, noverlap=n // 2, average="median"
    )
    np.testing.assert_allclose(aux_psd[1], reference_aux, rtol=1e-10)
    assert used == (len(rest) - n) // (n // 2) + 1


def test_detector_data_flows_through_the_images_stage(detector_files, glitch_config, tmp_path):
    """The images stage whitens with the off-source PSD: noise pixels have mean ~1 (norm psd)
    and the trigger windows are much louder than the clean ones."""
    from twinflow.glitch.qtransform import build_images, load_images

    _, h5, _, csv, _ = detector_files
    data = _data_settings(glitch_config, [h5], csv)
    shard = tmp_path / "shard-0.h5"
    load_detector_data(data, shard)
    q = dict(glitch_config["qtransform"], frange=[20, 100], window=1.0)
    out = tmp_path / "images.h5"
    build_images(data, q, [shard], out)
    images = load_images(out)
    assert not images.truth
    energy = images.strain_energy(images.strain)
    glitchy = images.labels["has_glitch"]
    clean_mean = energy[~glitchy].mean()
    assert 0.8 < clean_mean < 1.25, clean_mean
    assert np.all(energy[glitchy].max(axis=(1, 2)) > 20 * energy[~glitchy].max(axis=(1, 2)).mean())
    assert np.isnan(images.labels["glitch_energy"]).all()


# --------------------------------------------------------------------------------------------
# Bad input: one line, before anything is written


def _fails(data, out, match):
    with pytest.raises(ConfigError, match=match) as err:
        load_detector_data(data, out)
    assert "\n" not in str(err.value)
    assert not out.exists()


def test_missing_channel_is_named(detector_files, glitch_config, tmp_path):
    _, h5, gwf, csv, _ = detector_files
    for path in (h5, gwf):
        data = _data_settings(glitch_config, [path], csv)
        data["files"]["aux-channels"] = [AUX[0], "H1:NOT-A_CHANNEL"]
        _fails(data, tmp_path / "out.h5", "'H1:NOT-A_CHANNEL' is not in")


def test_trigger_outside_the_data_is_named(detector_files, glitch_config, tmp_path):
    _, h5, *_ = detector_files
    csv = tmp_path / "late.csv"
    csv.write_text(f"time,frequency,snr\n{T0 + 10},50,10\n{T0 + SPAN - 0.5},50,10\n")
    _fails(_data_settings(glitch_config, [h5], csv), tmp_path / "out.h5", "outside the data")


def test_sampling_rate_mismatch_is_named(detector_files, glitch_config, tmp_path):
    channels, *_ = detector_files
    path = tmp_path / "H-H1_FAST-1200000000-32.h5"
    half = {k: v[: len(v) // 2] for k, v in channels.items()}
    _write(path, half, "hdf5", rate=2 * FS)  # same samples, claimed at twice the rate
    data = _data_settings(glitch_config, [path], None, windows="grid")
    _fails(data, tmp_path / "out.h5", "sampled at 1024 Hz, but sampling-frequency is 512 Hz")


def test_files_that_are_not_gwf_or_hdf5_are_refused(detector_files, glitch_config, tmp_path):
    _, _, _, csv, _ = detector_files
    text = tmp_path / "strain.txt"
    text.write_text("0 1\n1 2\n")
    _fails(_data_settings(glitch_config, [text], csv), tmp_path / "out.h5", "not a GWF or HDF5")
    fake = tmp_path / "strain.gwf"
    fake.write_text("not a frame file")
    _fails(_data_settings(glitch_config, [fake], csv), tmp_path / "out.h5", "not a valid GWF")


def test_config_check_refuses_bad_files_settings(detector_files, glitch_config):
    from twinflow.glitch.settings import check_config

    _, h5, _, csv, _ = detector_files
    g = copy.deepcopy(glitch_config)
    g["data"] = _data_settings(glitch_config, [h5], csv)
    g["qtransform"]["frange"] = [20, 100]
    g["data"]["coupling"]["gain"] = [1.0]  # the simulator's settings are not used for files
    check_config(g)
    g["data"]["files"]["aux-channels"] = [AUX[0]]
    with pytest.raises(ConfigError, match="files.aux-channels"):
        check_config(g)
    g["data"]["files"].update({"aux-channels": list(AUX), "triggers": None})
    with pytest.raises(ConfigError, match="files.triggers"):
        check_config(g)
