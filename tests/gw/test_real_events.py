"""Real events from the shipped overlay (config/events.yaml): published intervals, refusal of
events outside the trained prior, the real-event figures, and PESummary reading our results.

The end-to-end part runs GW170104 (../shared/data/gw/strain) through :func:`run_event` with a
tiny untrained sky-free model: it checks the machinery and the science of each piece against
an independent reference (bilby's detector response, white noise of known variance, a uniform
sky), not the posterior's quality.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

bilby = pytest.importorskip("bilby")

from tests.gw.test_inference import (  # noqa: E402
    PRIOR,
    SETTINGS,
    strain_event_settings,
    tiny_model,
)

from twinflow.core.config import validate_config  # noqa: E402
from twinflow.core.settings import ConfigError  # noqa: E402
from twinflow.gw import settings as slicing  # noqa: E402
from twinflow.gw.inference.event_figures import (  # noqa: E402
    plot_event_sample_sizes,
    plot_skymap,
    plot_whitened_strain,
    sky_density,
    whitened_time_series,
)
from twinflow.gw.inference.stage import run_event  # noqa: E402
from twinflow.gw.prior import build_prior, sampled_parameters  # noqa: E402
from twinflow.gw.published import published_intervals  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
OVERLAY = REPO / "config" / "events.yaml"


def overlay_events(folder: Path | None = None) -> dict:
    """The events of config/events.yaml, strain paths made absolute (beside the repository)."""
    events = yaml.safe_load(OVERLAY.read_text())["gw"]["inference"]["events"]
    for event in events.values():
        event["data-dict"] = {
            d: str((REPO / p).resolve()) if folder is None else str(folder / Path(p).name)
            for d, p in event["data-dict"].items()
        }
    return events


def shipped_config_with_events(shared_data) -> dict:
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["gw"]["inference"]["events"] = overlay_events(shared_data / "gw" / "strain")
    return validate_config(config)


def test_published_chirp_mass_is_converted_to_the_detector_frame():
    # GW170104, GWTC-1 Table III: 21.4 (-1.8, +2.2) Msun at z = 0.20
    intervals = published_intervals(overlay_events()["GW170104"]["published"])
    np.testing.assert_allclose(intervals["chirp_mass"], [21.4 * 1.2, 19.6 * 1.2, 23.6 * 1.2])
    np.testing.assert_allclose(intervals["luminosity_distance"], [990, 560, 1430])
    np.testing.assert_allclose(intervals["chi_eff"], [-0.04, -0.24, 0.13])
    with pytest.raises(ConfigError, match="redshift"):
        published_intervals({"chirp_mass_source": {"median": 20, "minus": 1, "plus": 1}})
    with pytest.raises(ConfigError, match="minus and plus >= 0"):
        published_intervals(
            {
                "chirp_mass_source": {"median": 20, "minus": -1, "plus": 1},
                "redshift": {"median": 0.1, "minus": 0, "plus": 0},
            }
        )


def test_the_default_model_holds_gw170104_and_refuses_the_other_two(shared_data):
    gw = shipped_config_with_events(shared_data)["gw"]
    refused = slicing.refused_events(gw)
    assert sorted(refused) == ["GW151226", "LVT151012"]
    for name, line in refused.items():
        assert "\n" not in line and line.startswith(f"{name}: ")
        assert "chirp_mass" in line and "20-40" in line
    assert "9.7 Msun" in refused["GW151226"] and "18.4 Msun" in refused["LVT151012"]
    names = slicing.inference_event_names(gw)
    assert "GW170104" in names and not set(refused) & set(names)
    assert slicing.real_event_names(gw) == ["GW170104"]
    with pytest.raises(ConfigError, match="GW151226: refused before sampling"):
        slicing.inference_settings_for(gw, "GW151226")
    # a prior that covers them analyses all three
    wide = {**gw["dataset"]["prior"]}
    wide["chirp_mass"] = {**wide["chirp_mass"], "minimum": 7.0}
    assert slicing.refused_events({**gw, "dataset": {**gw["dataset"], "prior": wide}}) == {}


def test_a_refused_event_stops_before_any_work(tmp_path):
    events = overlay_events()
    settings = {
        **SETTINGS,
        "event": "GW151226",
        "kind": "strain",
        "strain": events["GW151226"],
        "analysis": {},
        "prior": PRIOR,
    }
    # the model file does not exist: the refusal must come first
    with pytest.raises(ConfigError, match="GW151226: refused before sampling") as err:
        run_event(settings, tmp_path / "missing.pt", tmp_path / "out", log=lambda *_: None)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "out").exists()


def test_an_event_outside_the_checkpoints_prior_is_refused_before_sampling(
    shared_data, tmp_path, monkeypatch
):
    # the analysis prior holds GW170104, the prior the model was trained on does not
    from twinflow.gw.inference import stage
    from twinflow.gw.training.model import load_posterior_model, save_posterior_model

    spec = {**PRIOR, "chirp_mass": {**PRIOR["chirp_mass"], "minimum": 30}}
    model = tiny_model(tmp_path / "model.pt", sampled_parameters(build_prior(spec)), spec=spec)
    model.settings["prior"] = spec
    save_posterior_model(tmp_path / "model.pt", model)
    assert load_posterior_model(tmp_path / "model.pt").settings["prior"] == spec
    monkeypatch.setattr(stage, "analyse_event", lambda *a, **k: pytest.fail("sampled"))
    settings = strain_event_settings(
        "GW170104",
        overlay_events(shared_data / "gw" / "strain")["GW170104"],
        PRIOR,
        n_samples=SETTINGS["n-samples"],
    )
    with pytest.raises(ConfigError, match="chirp_mass range 30-40") as err:
        run_event(settings, tmp_path / "model.pt", tmp_path / "out", log=lambda *_: None)
    assert str(err.value).startswith("GW170104: refused before sampling")
    assert not (tmp_path / "out").exists()


def test_whitening_gives_unit_variance_white_noise():
    fs, n, sigma = 1024.0, 1024 * 64, 3.0
    noise = np.random.default_rng(4).normal(0, sigma, n)
    frequency_series = np.fft.rfft(noise) / fs  # bilby's convention
    f = np.fft.rfftfreq(n, 1 / fs)
    psd = np.full(len(f), 2 * sigma**2 / fs)  # one-sided PSD of white noise
    white = whitened_time_series(frequency_series, psd, np.ones(len(f), dtype=bool), fs)
    assert np.std(white) == pytest.approx(1.0, rel=0.01)
    band = (f >= 20) & (f <= 256)  # a band keeps its share of the variance
    white = whitened_time_series(frequency_series, psd, band, fs)
    assert np.var(white) == pytest.approx(band.mean(), rel=0.03)


def test_sky_density_is_per_steradian():
    rng = np.random.default_rng(5)
    n = 400_000
    ra = rng.uniform(0, 2 * np.pi, n)
    dec = np.arcsin(rng.uniform(-1, 1, n))  # uniform on the sphere
    ra_edges, dec_edges, density = sky_density(ra, dec, np.full(n, 1 / n), bins=12)
    assert np.mean(density) == pytest.approx(1 / (4 * np.pi), rel=1e-9)
    # equal solid-angle bins: a uniform sky is flat to its Poisson noise
    expected = 1 / (4 * np.pi)
    counts_per_bin = n / density.size
    assert np.std(density / expected) < 4 / np.sqrt(counts_per_bin)
    assert dec_edges[0] == pytest.approx(-np.pi / 2) and ra_edges[-1] == pytest.approx(2 * np.pi)


@pytest.fixture(scope="module")
def gw170104_outputs(shared_data, tmp_path_factory):
    """GW170104 analysed with a tiny sky-free model, published block from config/events.yaml."""
    folder = shared_data / "gw" / "strain"
    tmp = tmp_path_factory.mktemp("gw170104")
    spec = {
        **PRIOR,
        "chi_1": {"distribution": "Uniform", "minimum": -0.8, "maximum": 0.8},
        "chi_2": {"distribution": "Uniform", "minimum": -0.8, "maximum": 0.8},
        "ra": {"distribution": "Uniform", "minimum": 0, "maximum": 6.283185307179586},
        "dec": {"distribution": "Cosine"},
    }
    # as the default model: the phase is marginalised, not inferred
    names = [n for n in sampled_parameters(build_prior(spec)) if n != "phase"]
    tiny_model(tmp / "model.pt", names, spec=spec)
    settings = strain_event_settings(
        "GW170104", overlay_events(folder)["GW170104"], spec, n_samples=400
    )
    out = tmp / "GW170104"
    summary = run_event(settings, tmp / "model.pt", out, processes=1, log=lambda *_: None)
    return out, summary


def test_the_overlay_leaves_enough_off_source_data_for_welch(gw170104_outputs):
    # The 32 s file starts at GPS 1167559920; the 4 s segment ends 2 s after the trigger.
    # Welch segments of 4 s at 50 % overlap: 1 + floor((length - 4) / 2) on each side.
    _, summary = gw170104_outputs
    start = 1167559936.6 - 2.0
    before, after = start - 1167559920, 1167559920 + 32 - (start + 4)
    expected = sum(1 + int((length - 4) // 2) for length in (before, after))
    assert expected == 11
    for d in ("H1", "L1"):
        assert summary["metadata"]["psd-source"][d] == f"welch:{expected} segments off source"


def test_maximum_likelihood_signal_is_bilbys_detector_response(gw170104_outputs):
    out, summary = gw170104_outputs
    with h5py.File(out / "posterior.h5", "r") as f:
        best = dict(f["maximum_likelihood"].attrs)
        log_l = f["log_likelihood_ratio"][:]
        start = f["event"].attrs["start_time"]
        frequencies = f["event/frequencies"][:]
        data = {d: {k: f["event"][d][k][:] for k in f["event"][d]} for d in ("H1", "L1")}
        bands = {d: f["event"][d].attrs["band"] for d in ("H1", "L1")}
    assert best["log_likelihood_ratio"] == pytest.approx(np.max(log_l[np.isfinite(log_l)]))
    assert summary["phase_marginalized"] and np.isnan(best["phase"])
    wg = bilby.gw.WaveformGenerator(
        duration=4,
        sampling_frequency=1024,
        start_time=start,
        frequency_domain_source_model=bilby.gw.source.lal_binary_black_hole,
        parameter_conversion=bilby.gw.conversion.convert_to_lal_binary_black_hole_parameters,
        waveform_arguments=dict(
            waveform_approximant="IMRPhenomXAS", reference_frequency=20.0, minimum_frequency=20.0
        ),
    )
    parameters = {k: float(v) for k, v in best.items() if k != "log_likelihood_ratio"}
    parameters["phase"] = 0.0
    polarisations = wg.frequency_domain_strain(parameters)
    overlap = 0.0
    for d in ("H1", "L1"):
        ifo = bilby.gw.detector.get_empty_interferometer(d)
        ifo.minimum_frequency, ifo.maximum_frequency = bands[d]
        ifo.set_strain_data_from_frequency_domain_strain(
            data[d]["strain"], start_time=start, frequency_array=frequencies
        )
        response = ifo.get_detector_response(polarisations, parameters)
        mask = ifo.frequency_mask
        ours = data[d]["maximum_likelihood_signal"]
        assert np.all(ours[~mask] == 0)
        # the same signal up to the one overall phase the marginalisation maximised
        ratio = ours[mask] / response[mask]
        np.testing.assert_allclose(np.abs(ratio), 1.0, rtol=1e-6)
        np.testing.assert_allclose(ratio, ratio[0], rtol=1e-6)
        overlap += np.sum(np.conj(response[mask]) * data[d]["strain"][mask] / data[d]["psd"][mask])
        rotation = ratio[0]
    # that phase maximises Re<h, d> over both detectors
    assert np.angle(rotation) == pytest.approx(np.angle(overlap), abs=1e-6)


def test_real_event_figures(gw170104_outputs, monkeypatch):
    import twinflow.gw.inference.report as report

    out, summary = gw170104_outputs
    plot_whitened_strain(out / "posterior.h5", out / "strain.png")
    plot_skymap(out / "posterior.h5", out / "skymap.png")
    plot_event_sample_sizes(out / "summary.json", out / "ess.png")
    for name in ("strain", "skymap", "ess"):
        assert (out / f"{name}.png").stat().st_size > 10_000

    # the corner plot marks the published 90 % intervals on its diagonal
    drawn = {}

    def keep(fig, path):
        drawn["fig"] = fig

    monkeypatch.setattr(report, "save_figure", keep)
    report.plot_event_corner(out / "posterior.h5", out / "corner.png")
    post = report.read_posterior(out / "posterior.h5")
    names = list(report.with_derived(post["samples"]))
    if post["network"] is not None:  # the corner shows what both stages hold
        names = [n for n in names if n in report.with_derived(post["network"]["samples"])]
    axes = np.array(drawn["fig"].axes).reshape(len(names), len(names))
    for name in ("chirp_mass", "luminosity_distance", "chi_eff"):
        median, lower, upper = post["published"][name]
        ax = axes[names.index(name), names.index(name)]
        spans = [p.get_x() for p in ax.patches if hasattr(p, "get_x")]
        extents = [
            tuple(np.round(p.get_xy()[[0, 2], 0], 6))
            for p in ax.patches
            if hasattr(p, "get_xy") and np.ndim(p.get_xy()) == 2 and len(p.get_xy()) >= 4
        ]
        assert (round(lower, 6), round(upper, 6)) in extents or lower in spans, (name, extents)
        assert any(np.allclose(line.get_xdata(), median) for line in ax.lines)


def test_pesummary_reads_our_result_and_builds_its_page(gw170104_outputs, tmp_path):
    pesummary_io = pytest.importorskip("pesummary.io")
    out, summary = gw170104_outputs
    opened = pesummary_io.read(str(out / "result.json"))
    samples = opened.samples_dict
    ours = bilby.core.result.read_in_result(str(out / "result.json")).posterior
    for name in ("chirp_mass", "luminosity_distance", "ra", "dec"):
        np.testing.assert_allclose(np.sort(samples[name]), np.sort(ours[name]), rtol=1e-12)
    # summarypages in its fastest form that still builds every page of our parameters: no
    # pesummary conversions (derived quantities), corner, interactive or ligo.skymap plots
    # (~16 s of CPU here; ~34 s with the conversions, which also pass: config/README.md)
    executable = shutil.which("summarypages") or str(Path(sys.executable).parent / "summarypages")
    start = time.perf_counter()
    run = subprocess.run(
        [
            executable,
            "--webdir",
            str(tmp_path / "pages"),
            "--samples",
            str(out / "result.json"),
            "--labels",
            "GW170104",
            "--disable_corner",
            "--disable_interactive",
            "--no_ligo_skymap",
            "--disable_expert",
            "--no_conversion",
            "--disable_prior_sampling",
            "--gw",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    elapsed = time.perf_counter() - start
    assert run.returncode == 0, run.stderr[-3000:]
    assert (tmp_path / "pages" / "home.html").is_file(), elapsed
    assert (tmp_path / "pages" / "html" / "GW170104_GW170104.html").is_file()
