"""PSD banks: Welch on simulated noise recovers the input curve; real GWOSC strain; bad input."""

from __future__ import annotations

import copy

import h5py
import lal
import lalsimulation
import numpy as np
import pytest
from gwpy.timeseries import TimeSeries

from twinflow.cli import main as twinflow_main
from twinflow.core.io import dumps_settings
from twinflow.gw.psd import estimate_psd_bank, load_psd_bank
from twinflow.gw.strain_sources import valid_segments

QUIET = {
    "scale-sigma": 0.0,
    "drift-sigma": 0.0,
    "drift-correlation": 0.5,
    "line-frequencies": [],
    "line-width": 0.3,
    "line-height": 0.0,
    "line-height-sigma": 0.0,
}


def simulated_settings(**overrides) -> dict:
    settings = {
        "detector": "H1",
        "duration": 8,
        "sampling-frequency": 4096,
        "maximum-frequency": 1800,
        "seed": 11,
        "source": "simulated",
        "n-stretches": 6,
        "psd-length": 128,
        "overlap": 0.5,
        "window": "hann",
        "average": "median",
        "simulation": {"curve": "aLIGO-O3-low", "low-frequency-cutoff": 10.0, **QUIET},
        "files": {"strain": [], "channel": None},
    }
    for key, value in overrides.items():
        settings[key] = value
    return settings


def lalsim_o3_psd(frequencies: np.ndarray) -> np.ndarray:
    """The aLIGO O3-low curve evaluated directly with LALSimulation (the reference).

    ``frequencies`` must be a subset of a uniform grid starting at 0.
    """
    delta_f = frequencies[1] - frequencies[0]
    series = lal.CreateREAL8FrequencySeries(
        "psd", 0, 0.0, delta_f, lal.DimensionlessUnit, int(round(frequencies[-1] / delta_f)) + 2
    )
    lalsimulation.SimNoisePSDaLIGOO3LowT1800545(series, 10.0)
    return series.data.data[np.rint(frequencies / delta_f).astype(int)]


def test_welch_recovers_input_psd(tmp_path):
    bank = estimate_psd_bank(simulated_settings(), tmp_path / "H1.h5", log=lambda *_: None)
    band = (bank.frequencies >= 20) & (bank.frequencies <= 1800)
    # average the stretches, then compare bin by bin: per-bin estimates are skewed (chi^2-like),
    # so the median over bins of a single stretch sits ~1/(3K) below 1 even without bias
    ratio = bank.psd[:, band].mean(axis=0) / lalsim_o3_psd(bank.frequencies[band])
    assert abs(np.median(ratio) - 1) < 0.02
    # and it follows the curve across the band, not only on average: medians of 1 Hz blocks
    blocks = ratio[: len(ratio) // 80 * 80].reshape(-1, 80)
    assert np.all(np.abs(np.median(blocks, axis=1) - 1) < 0.1)


@pytest.mark.parametrize("average", ["mean", "median"])
def test_welch_spread_matches_expected_variance(tmp_path, average):
    # Non-overlapping segments: each periodogram bin is PSD x Exp(1), independent across
    # K = psd-length / duration segments. Mean: var = 1/K. Median (bias-corrected): the spread of
    # the median of K exponentials over its bias, computed here by plain Monte Carlo.
    settings = simulated_settings(
        **{
            "overlap": 0.0,
            "average": average,
            "psd-length": 88,
            "n-stretches": 4,
            "sampling-frequency": 2048,
            "maximum-frequency": 1000,
        }
    )
    k = 88 // 8
    bank = estimate_psd_bank(settings, tmp_path / "H1.h5", log=lambda *_: None)
    band = (bank.frequencies >= 30) & (bank.frequencies <= 900)
    ratio = bank.psd[:, band] / lalsim_o3_psd(bank.frequencies[band])
    rng = np.random.default_rng(0)
    draws = rng.exponential(size=(200_000, k))
    reference = draws.mean(axis=1) if average == "mean" else np.median(draws, axis=1)
    expected_std = np.std(reference / np.mean(reference))
    if average == "mean":
        assert expected_std == pytest.approx(1 / np.sqrt(k), rel=0.01)
    assert np.std(ratio) == pytest.approx(expected_std, rel=0.08)


def test_bank_is_reproducible_and_spread_by_variations(tmp_path):
    settings = simulated_settings(
        **{
            "n-stretches": 12,
            "psd-length": 16,
            "sampling-frequency": 1024,
            "maximum-frequency": 500,
        }
    )
    settings["simulation"].update(
        {
            "scale-sigma": 0.3,
            "line-frequencies": [60.0],
            "line-height": 50.0,
            "line-height-sigma": 0.5,
        }
    )
    a = estimate_psd_bank(settings, tmp_path / "a.h5", log=lambda *_: None)
    b = estimate_psd_bank(copy.deepcopy(settings), tmp_path / "b.h5", log=lambda *_: None)
    np.testing.assert_array_equal(a.psd, b.psd)
    other = estimate_psd_bank(
        {**settings, "detector": "L1"}, tmp_path / "c.h5", log=lambda *_: None
    )
    assert not np.allclose(a.psd, other.psd, rtol=0.01, atol=0)
    # broadband level spread: std of ln(level) across stretches near 0.3
    band = (a.frequencies > 100) & (a.frequencies < 300)
    levels = np.log(np.median(a.psd[:, band] / lalsim_o3_psd(a.frequencies[band]), axis=1))
    assert 0.15 < np.std(levels) < 0.5
    # the 60 Hz line stands out of the bank
    at60 = np.argmin(np.abs(a.frequencies - 60))
    assert np.median(a.psd[:, at60] / a.psd[:, at60 - 8]) > 5
    with h5py.File(tmp_path / "a.h5") as f:
        assert f.attrs["detector"] == "H1" and "simulated" in f.attrs["source"]
        assert f["psd"].shape == (12, 8 * 1024 // 2 + 1)


def test_load_psd_bank_round_trip(tmp_path):
    settings = simulated_settings(
        **{"n-stretches": 2, "psd-length": 16, "sampling-frequency": 512, "maximum-frequency": 200}
    )
    bank = estimate_psd_bank(
        settings, tmp_path / "H1.h5", plot=tmp_path / "H1.png", log=lambda *_: None
    )
    loaded = load_psd_bank(tmp_path / "H1.h5")
    np.testing.assert_array_equal(loaded.psd, bank.psd)
    assert loaded.delta_f == pytest.approx(1 / 8)
    assert loaded.settings == settings
    assert (tmp_path / "H1.png").stat().st_size > 1000


def real_settings(files, **overrides) -> dict:
    settings = simulated_settings(**{"source": "files", "psd-length": 32, "n-stretches": 1})
    settings["files"] = {"strain": [str(f) for f in files], "channel": None}
    settings.update(overrides)
    return settings


@pytest.mark.parametrize("detector", ["H1", "L1"])
def test_real_gwosc_strain_gives_o1_asd(tmp_path, shared_data, detector):
    path = shared_data / "gw" / "strain" / f"{detector[0]}-{detector}_LOSC_4_V2-1135136334-32.hdf5"
    bank = estimate_psd_bank(
        real_settings([path], detector=detector), tmp_path / "bank.h5", log=lambda *_: None
    )
    band = (bank.frequencies >= 100) & (bank.frequencies <= 200)
    asd = np.median(bank.asd[:, band])
    assert 4e-24 < asd < 3e-23  # O1 sensitivity near 100-200 Hz is ~1e-23 /sqrt(Hz)
    # the independent reference: gwpy's own Welch median estimate of the same 32 s
    reference = TimeSeries.read(str(path), format="hdf5.gwosc").psd(
        fftlength=8, overlap=4, window="hann", method="median"
    )
    ref = reference.value[band]
    np.testing.assert_allclose(bank.psd[0, band], ref, rtol=1e-6)


def test_real_strain_resampled_and_nan_excluded(tmp_path, shared_data):
    path = shared_data / "gw" / "strain" / "H-H1_LOSC_4_V2-1135136334-32.hdf5"
    series = TimeSeries.read(str(path), format="hdf5.gwosc")
    values = series.value.copy()
    values[4096 * 20 : 4096 * 21] = np.nan  # a 1 s gap: 20 s of valid data before it
    gappy = TimeSeries(values, t0=series.t0, sample_rate=series.sample_rate)
    ascii_path = tmp_path / "H1-gappy.txt"
    gappy.write(str(ascii_path))
    messages = []
    bank = estimate_psd_bank(
        real_settings(
            [ascii_path],
            **{"psd-length": 16, "sampling-frequency": 2048, "maximum-frequency": 1000},
        ),
        tmp_path / "bank.h5",
        log=messages.append,
    )
    assert any("excluded 1 s" in m for m in messages)
    assert bank.psd.shape == (1, 8 * 2048 // 2 + 1)  # only the 20 s segment holds a 16 s stretch
    assert valid_segments(values) == [(0, 4096 * 20), (4096 * 21, len(values))]


# ---------------------------------------------------------------------------------------------
# Bad input: one clear error naming the key and value, exit status 2, and no output file.


def run_cli(settings, tmp_path, capsys):
    out = tmp_path / "bank.h5"
    status = twinflow_main(
        [
            "gw",
            "psd",
            "--settings",
            dumps_settings(settings),
            "--out",
            str(out),
            "--plot",
            str(tmp_path / "bank.png"),
        ]
    )
    err = capsys.readouterr().err
    assert not out.exists() and not (tmp_path / "bank.png").exists()
    assert not list(tmp_path.glob(".*tmp*"))
    return status, err


def nan_file(tmp_path):
    path = tmp_path / "nan.txt"
    TimeSeries(np.full(4096 * 16, np.nan), t0=0, sample_rate=4096).write(str(path))
    return path


def gwosc(shared_data):
    return shared_data / "gw" / "strain" / "H-H1_LOSC_4_V2-1135136334-32.hdf5"


@pytest.mark.parametrize(
    "case, make_settings, expected",
    [
        (
            "missing file",
            lambda tmp, data: real_settings([tmp / "nope.hdf5"]),
            ["files.strain.H1", "nope.hdf5", "no such file"],
        ),
        (
            "NaNs throughout",
            lambda tmp, data: real_settings([nan_file(tmp)], **{"psd-length": 8}),
            ["files.strain.H1", "no finite samples"],
        ),
        (
            "wrong sample rate",
            lambda tmp, data: real_settings(
                [gwosc(data)], **{"sampling-frequency": 3000, "maximum-frequency": 1000}
            ),
            ["4096 Hz", "sampling-frequency = 3000"],
        ),
        (
            "above Nyquist",
            lambda tmp, data: simulated_settings(**{"maximum-frequency": 2500}),
            ["maximum-frequency = 2500", "Nyquist frequency 2048 Hz"],
        ),
        (
            "fftlength longer than stretch",
            lambda tmp, data: simulated_settings(**{"psd-length": 4}),
            ["psd-length = 4", "duration = 8"],
        ),
        (
            "unknown detector",
            lambda tmp, data: simulated_settings(detector="X1"),
            ["detector = 'X1'", "H1"],
        ),
        (
            "unknown curve",
            lambda tmp, data: {
                **simulated_settings(),
                "simulation": {**simulated_settings()["simulation"], "curve": "O9"},
            },
            ["simulation.curves.H1 = 'O9'"],
        ),
    ],
)
def test_bad_input_fails_clearly_before_work(
    tmp_path, shared_data, capsys, case, make_settings, expected
):
    status, err = run_cli(make_settings(tmp_path, shared_data), tmp_path, capsys)
    assert status == 2, case
    assert err.count("error:") == 1
    for fragment in expected:
        assert fragment in err, (case, err)
