"""Events: real strain (the three GWOSC events), PSDs, injections, and bad event input."""

from __future__ import annotations

import json

import numpy as np
import pytest

bilby = pytest.importorskip("bilby")

from twinflow.core.settings import ConfigError  # noqa: E402
from twinflow.gw.inference.events import EventData
from twinflow.gw.inference.injections import frequency_domain_noise, make_injection
from twinflow.gw.inference.polarisations import detector_signals
from twinflow.gw.inference.strain import load_strain_event

bilby.core.utils.logger.setLevel("ERROR")

ANALYSIS = {
    "detectors": ["H1", "L1"],
    "duration": 4,
    "sampling-frequency": 1024,
    "minimum-frequency": 20,
    "maximum-frequency": 256,
}
WELCH = {"window": "hann", "overlap": 0.5, "average": "median"}


@pytest.fixture(scope="module")
def real_events(shared_data):
    folder = shared_data / "gw" / "strain"
    if not (folder / "events.json").is_file():
        pytest.skip(f"{folder}/events.json is not present")
    catalogue = json.loads((folder / "events.json").read_text())
    return {
        name: {
            "trigger-time": e["tevent"],
            "data-dict": {d: str(folder / e[f"fn_{d}"]) for d in ("H1", "L1")},
        }
        for name, e in catalogue.items()
    }


def event_settings(event, **analysis):
    return {
        "event": event,
        "analysis": {**ANALYSIS, **analysis},
        "post-trigger-duration": 2.0,
        "tukey-roll-off": 0.4,
        "psd": WELCH,
    }


def test_real_events_match_bilby_and_are_whitened_by_their_psd(real_events):
    from gwpy.timeseries import TimeSeries

    for name, event in real_events.items():
        data = load_strain_event(name, event_settings(event), log=lambda *_: None)
        # the segment starts on the sample nearest trigger - 2 s; offsets refer to start + 2 s
        assert abs(data.start_time - (event["trigger-time"] - 2.0)) <= 0.5 / 1024
        assert data.trigger_time == data.start_time + 2.0
        for d in ("H1", "L1"):
            # bilby's own strain data from the same (resampled, cropped) gwpy series
            series = TimeSeries.read(event["data-dict"][d], format="hdf5.gwosc").resample(1024)
            segment = series.crop(data.start_time, data.start_time + 4)
            reference = bilby.gw.detector.InterferometerStrainData(
                minimum_frequency=20, maximum_frequency=256, roll_off=0.4
            )
            reference.set_from_gwpy_timeseries(segment)
            mask = data.frequency_mask(d)  # bilby zeroes its strain outside the band
            np.testing.assert_allclose(
                data.strain[d][mask], reference.frequency_domain_strain[mask], rtol=1e-10
            )
            assert data.window_factor == pytest.approx(reference.window_factor, rel=1e-12)
            # E|d|^2 = T S w / 2 for noise: the whitened strain has about unit power in the band.
            # Loose: on these segments the Tukey window's leakage and real non-stationarity put
            # the power 0-30 % above the off-source Welch PSD; a factor-2 normalisation slip fails.
            white = np.abs(data.strain[d][mask]) ** 2 / (
                data.duration * data.psd[d][mask] * data.window_factor / 2
            )
            assert 0.7 < np.median(white) / np.log(2) < 1.5, (name, d)  # median of Exp(1) = ln 2


def test_welch_off_source_matches_gwpy(real_events):
    from gwpy.timeseries import TimeSeries

    event = (
        real_events["GW150914"] if "GW150914" in real_events else next(iter(real_events.values()))
    )
    data = load_strain_event("x", event_settings(event), log=lambda *_: None)
    series = TimeSeries.read(event["data-dict"]["H1"], format="hdf5.gwosc").resample(1024)
    before = series.crop(series.t0.value, data.start_time)
    after = series.crop(data.start_time + 4, series.t0.value + series.duration.value)
    estimates, counts = [], []
    for side in (before, after):
        n = len(side) / 1024
        if n >= 4:
            estimates.append(
                side.psd(fftlength=4, overlap=2, window="hann", method="median").value
            )
            counts.append(1 + int((n - 4) // 2))
    reference = np.average(estimates, axis=0, weights=counts)
    band = (data.frequencies >= 20) & (data.frequencies <= 256)
    np.testing.assert_allclose(data.psd["H1"][band], reference[band], rtol=1e-6)


def test_psd_dict_file_is_interpolated(real_events, tmp_path):
    event = dict(next(iter(real_events.values())))
    f = np.linspace(10, 300, 500)
    psd = 1e-46 * (1 + (50 / f) ** 4)
    np.savetxt(tmp_path / "h1.txt", np.c_[f, psd])
    event["psd-dict"] = {"H1": str(tmp_path / "h1.txt")}
    data = load_strain_event("x", event_settings(event), log=lambda *_: None)
    grid = data.frequencies
    band = (grid >= 20) & (grid <= 256)
    np.testing.assert_allclose(data.psd["H1"][band], np.interp(grid[band], f, psd), rtol=1e-12)
    assert data.metadata["psd-source"]["H1"].startswith("file:")
    assert data.metadata["psd-source"]["L1"].startswith("welch:")
    np.savetxt(tmp_path / "short.txt", np.c_[f[f < 100], psd[f < 100]])
    event["psd-dict"] = {"H1": str(tmp_path / "short.txt")}
    with pytest.raises(ConfigError, match="not the analysis band"):
        load_strain_event("x", event_settings(event), log=lambda *_: None)


@pytest.mark.parametrize(
    "change, message",
    [
        (
            lambda e: e.update({"trigger-time": e["trigger-time"] + 100}),
            r"trigger-time = .* lies outside H1's file",
        ),
        (
            lambda e: e["data-dict"].pop("L1"),
            r"data-dict = .* a strain file for every analysed detector .*missing L1",
        ),
        (
            lambda e: e.update({"maximum-frequency": 600}),
            r"events.bad.maximum-frequency = 600(.0)? Hz exceeds the Nyquist frequency 512 Hz",
        ),
        (lambda e: e.update({"detectors": ["H1", "X9"]}), r"detectors = \['H1', 'X9'\]"),
        (
            lambda e: e.update({"minimum-frequency": {"H1": 20}}),
            r"minimum-frequency = \{'H1': 20\}.*missing \['L1'\]",
        ),
        (
            lambda e: e.update({"psd-dict": {"H1": "/no/such/psd.txt"}}),
            r"psd-dict.H1 = '/no/such/psd.txt': no such file",
        ),
        (lambda e: e.update({"trigger_time": 1}), r"unknown: \['trigger_time'\]"),
        (
            lambda e: e["data-dict"].update({"H1": "/no/such/file.hdf5"}),
            r"data-dict.H1 = '/no/such/file.hdf5': no such file",
        ),
    ],
)
def test_bad_event_input_names_key_and_value(real_events, change, message):
    event = json.loads(json.dumps(next(iter(real_events.values()))))
    change(event)
    with pytest.raises(ConfigError, match=message):
        load_strain_event("bad", event_settings(event), log=lambda *_: None)


def test_sampling_rate_that_is_not_an_integer_divisor(real_events):
    event = next(iter(real_events.values()))
    with pytest.raises(
        ConfigError, match="sampled at 4096 Hz, which cannot give sampling-frequency = 1000 Hz"
    ):
        load_strain_event(
            "bad",
            event_settings(event, **{"sampling-frequency": 1000, "maximum-frequency": 256}),
            log=lambda *_: None,
        )


def test_noise_has_bilbys_normalisation():
    rng = np.random.default_rng(0)
    psd = np.full(2049, 2e-46)
    n = np.stack([frequency_domain_noise(psd, 4.0, rng) for _ in range(200)])
    assert np.mean(np.abs(n) ** 2) / (4.0 * 2e-46 / 2) == pytest.approx(1.0, abs=0.02)
    # the same as bilby's own noise realisation
    bilby_psd = bilby.gw.detector.PowerSpectralDensity(
        frequency_array=np.linspace(0, 512, 2049), psd_array=psd
    )
    bilby_noise = np.stack([bilby_psd.get_noise_realisation(1024, 4.0)[0] for _ in range(200)])
    assert np.mean(np.abs(bilby_noise[:, 1:-1]) ** 2) / np.mean(
        np.abs(n[:, 1:-1]) ** 2
    ) == pytest.approx(1.0, abs=0.03)


def test_injection_signal_and_snr_match_bilby():
    params = dict(
        chirp_mass=30.0,
        mass_ratio=0.8,
        chi_1=0.2,
        chi_2=-0.1,
        theta_jn=0.5,
        phase=1.0,
        luminosity_distance=700.0,
        ra=2.0,
        dec=0.3,
        psi=0.4,
        geocent_time=0.01,
    )
    trigger = 1126259462.4
    psd = bilby.gw.detector.get_empty_interferometer("H1").power_spectral_density
    grid = np.linspace(0, 512, 2049)
    psds = {
        d: np.nan_to_num(psd.power_spectral_density_interpolated(grid), nan=np.inf)
        for d in ("H1", "V1")
    }
    analysis = {
        "detectors": ["H1", "V1"],
        "duration": 4.0,
        "sampling-frequency": 1024.0,
        "minimum-frequency": {"H1": 20.0, "V1": 30.0},
        "maximum-frequency": {"H1": 256.0, "V1": 200.0},
    }
    data = make_injection(
        "inj",
        params,
        psds,
        analysis,
        {"approximant": "IMRPhenomXAS", "reference-frequency": 20.0},
        trigger,
        2.0,
        np.random.default_rng(1),
    )
    wg = bilby.gw.WaveformGenerator(
        duration=4,
        sampling_frequency=1024,
        start_time=trigger - 2,
        frequency_domain_source_model=bilby.gw.source.lal_binary_black_hole,
        parameter_conversion=bilby.gw.conversion.convert_to_lal_binary_black_hole_parameters,
        waveform_arguments=dict(
            waveform_approximant="IMRPhenomXAS",
            reference_frequency=20.0,
            minimum_frequency=20.0,
            maximum_frequency=256.0,
        ),
    )
    absolute = {**params, "geocent_time": trigger + 0.01}
    polarizations = wg.frequency_domain_strain(absolute)
    for d in ("H1", "V1"):
        ifo = bilby.gw.detector.get_empty_interferometer(d)
        ifo.minimum_frequency, ifo.maximum_frequency = (
            analysis["minimum-frequency"][d],
            analysis["maximum-frequency"][d],
        )
        ifo.set_strain_data_from_zero_noise(
            sampling_frequency=1024, duration=4, start_time=trigger - 2
        )
        ifo.power_spectral_density = psd
        expected = ifo.get_detector_response(polarizations, absolute)
        ours = detector_signals(data, absolute, "IMRPhenomXAS", 20.0)[d]
        np.testing.assert_allclose(ours, expected, rtol=1e-9, atol=1e-12 * np.abs(expected).max())
        assert data.metadata["snr"][d]["optimal"] == pytest.approx(
            np.sqrt(ifo.optimal_snr_squared(expected).real), rel=1e-9
        )
    assert data.injection_parameters["geocent_time"] == 0.01
    assert isinstance(data, EventData) and data.window_factor == 1.0


@pytest.mark.parametrize("trigger_time", [None, 1167559936.6])
def test_injections_are_made_at_the_configured_trigger_time(repo, monkeypatch, trigger_time):
    """``injections.trigger-time`` places the injections (null: the model's reference time)."""
    import twinflow.gw.psd
    from twinflow.core.config import load_config
    from twinflow.gw.inference.stage import load_event
    from twinflow.gw.psd import PSDBank
    from twinflow.gw.settings import inference_settings_for

    gw = load_config(repo / "config" / "test.yaml")["gw"]
    gw["inference"]["injections"]["trigger-time"] = trigger_time
    settings = inference_settings_for(gw, "injection-1")
    fs, duration = gw["sampling-frequency"], gw["duration"]
    grid = np.linspace(0, fs / 2, int(fs * duration) // 2 + 1)
    psd = bilby.gw.detector.get_empty_interferometer("H1").power_spectral_density
    values = np.nan_to_num(psd.power_spectral_density_interpolated(grid), nan=np.inf)
    monkeypatch.setattr(
        twinflow.gw.psd,
        "load_psd_bank",
        lambda path: PSDBank(path, grid, values[None], {}),
    )
    event = load_event(settings, {"H1": "H1", "L1": "L1"}, log=lambda *_: None)
    expected = trigger_time or gw["dataset"]["reference-time"]
    assert event.trigger_time == expected
    assert event.start_time == expected - (duration - gw["dataset"]["post-trigger-duration"])
