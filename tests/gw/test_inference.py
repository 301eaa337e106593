"""Per-event inference with a (small, untrained) posterior model: outputs, bilby interop, errors.

The model here is a real :class:`PosteriorModel` with random weights: these tests check the
machinery (tokens, sampling, reweighting, files), independently of training quality; the
workflow test checks coverage with a trained model.
"""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch

bilby = pytest.importorskip("bilby")

from twinflow.core.settings import ConfigError  # noqa: E402
from twinflow.gw.domain import MultibandedFrequencyDomain  # noqa: E402
from twinflow.gw.inference.injections import make_injection
from twinflow.gw.inference.outputs import write_event_outputs
from twinflow.gw.inference.posterior import analyse_event
from twinflow.gw.inference.stage import collect_summaries, run_event
from twinflow.gw.prior import build_prior, sampled_parameters  # noqa: E402
from twinflow.gw.training.model import PosteriorModel, build_model_settings, save_posterior_model  # noqa: E402

bilby.core.utils.logger.setLevel("ERROR")

REFERENCE_TIME = 1126259462.4
PRIOR = {
    "chirp_mass": {"distribution": "UniformInComponentsChirpMass", "minimum": 20, "maximum": 40},
    "mass_ratio": {"distribution": "UniformInComponentsMassRatio", "minimum": 0.5, "maximum": 1},
    "chi_1": 0.0,
    "chi_2": 0.0,
    "theta_jn": {"distribution": "Sine"},
    "phase": {"distribution": "Uniform", "minimum": 0, "maximum": 6.283185307179586},
    "luminosity_distance": {"distribution": "Uniform", "minimum": 200, "maximum": 1500},
    "ra": 1.375,
    "dec": -1.2108,
    "psi": {"distribution": "Uniform", "minimum": 0, "maximum": 3.141592653589793},
    "geocent_time": {"distribution": "Uniform", "minimum": -0.05, "maximum": 0.05},
}
ANALYSIS = {
    "detectors": ["H1", "L1"],
    "duration": 4.0,
    "sampling-frequency": 1024.0,
    "minimum-frequency": {"H1": 20.0, "L1": 20.0},
    "maximum-frequency": {"H1": 256.0, "L1": 256.0},
}
MASKS = {
    "detector-drop-probabilities": [0.6, 0.4],
    "minimum-frequency": {"probability": 0.3, "maximum": 80},
    "maximum-frequency": {"probability": 0.3, "minimum": 180},
    "notches": {"probability": 0.2, "max-count": 2, "max-width": 3},
    "independent-detectors": True,
}
SETTINGS = {
    "n-samples": 600,
    "batch-size": 250,
    "seed": 3,
    "device": "cpu",
    "phase-marginalization": "auto",
    "tukey-roll-off": 0.4,
    "approximant": "IMRPhenomXAS",
    "reference-frequency": 20.0,
    # a small refinement: the tiny untrained model never reaches the target, which is reported
    "refinement": {
        "target-ess": 50,
        "max-likelihood-evaluations": 1000,
        "batch-size": 250,
        "max-iterations": 2,
    },
}


def tiny_model(
    path, parameters, duration=4.0, sampling_frequency=1024.0, detectors=("H1", "L1"), spec=PRIOR
):
    """A randomly initialised model whose samples mostly fall inside the prior ``spec``."""
    prior = build_prior(spec)
    mean, std = [], []
    for name in parameters:
        p = prior[name]
        mean.append((p.minimum + p.maximum) / 2)
        std.append((p.maximum - p.minimum) / 6)
    domain = MultibandedFrequencyDomain([20, 32, 64, 256], duration, sampling_frequency)
    settings = build_model_settings(
        parameters=parameters,
        mean=mean,
        std=std,
        detectors=list(detectors),
        frequency_scale=256.0,
        architecture={
            "tokenizer": {"hidden": 16, "blocks": 1},
            "transformer": {
                "d-model": 16,
                "layers": 1,
                "heads": 2,
                "feed-forward": 32,
                "dropout": 0.0,
            },
            "flow": {"transforms": 2, "hidden": [32, 32], "bins": 4},
        },
        seed=1,
        inputs={
            "detectors": list(detectors),
            "domain": domain.settings,
            "parameters": list(parameters),
            "reference-time": REFERENCE_TIME,
            "post-trigger-duration": 2.0,
            "minimum-frequency": 20.0,
            "maximum-frequency": 256.0,
            "masks": MASKS,
        },
    )
    torch.manual_seed(0)
    model = PosteriorModel(settings).eval()
    save_posterior_model(path, model)
    return model


def injection(snr_distance=600.0, seed=2, **analysis):
    rng = np.random.default_rng(seed)
    analysis = {**ANALYSIS, **analysis}
    psd = bilby.gw.detector.get_empty_interferometer("H1").power_spectral_density
    fs, duration = analysis["sampling-frequency"], analysis["duration"]
    grid = np.linspace(0, fs / 2, int(fs * duration) // 2 + 1)
    values = psd.power_spectral_density_interpolated(grid)
    psds = {d: np.where(np.isfinite(values), values, np.inf) for d in ("H1", "L1")}
    params = dict(
        chirp_mass=28.0,
        mass_ratio=0.8,
        chi_1=0.0,
        chi_2=0.0,
        theta_jn=0.6,
        phase=1.3,
        luminosity_distance=snr_distance,
        ra=1.375,
        dec=-1.2108,
        psi=0.7,
        geocent_time=0.004,
    )
    return make_injection("inj", params, psds, analysis, SETTINGS, REFERENCE_TIME, 2.0, rng)


def strain_event_settings(name, strain, spec, n_samples):
    """The inference settings of a real event (``strain``: its bilby_pipe keys) with ``spec``."""
    return {
        **SETTINGS,
        "n-samples": n_samples,
        "event": name,
        "kind": "strain",
        "strain": strain,
        "analysis": {
            "detectors": ["H1", "L1"],
            "duration": 4,
            "sampling-frequency": 1024,
            "minimum-frequency": 20,
            "maximum-frequency": 256,
        },
        "prior": spec,
        "reference-time": REFERENCE_TIME,
        "post-trigger-duration": 2.0,
        "psd": {"window": "hann", "overlap": 0.5, "average": "median"},
    }


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "model.pt"
    tiny_model(path, sampled_parameters(build_prior(PRIOR)))
    return path


def test_outputs_are_consistent_and_readable_by_bilby(model_path, tmp_path):
    from twinflow.gw.training.model import load_posterior_model

    model = load_posterior_model(model_path)
    prior = build_prior(PRIOR)
    event = injection()
    posterior = analyse_event(event, model, prior, SETTINGS, processes=1, log=lambda *_: None)
    summary = write_event_outputs(posterior, tmp_path, prior, SETTINGS)

    with h5py.File(tmp_path / "posterior.h5", "r") as f:
        samples = {k: f["samples"][k][:] for k in f["samples"]}
        log_q, log_prior, log_l, weights = (
            f[k][:] for k in ("log_q", "log_prior", "log_likelihood_ratio", "weights")
        )
    assert len(log_q) == summary["n_samples"]  # the refined samples, when refinement ran
    # weights, ESS and efficiency from the stored columns, by the standard formulas
    log_w = np.where(
        np.isfinite(log_prior) & np.isfinite(log_l), log_l + log_prior - log_q, -np.inf
    )
    w = np.exp(log_w - log_w.max())
    np.testing.assert_allclose(weights, w / w.sum(), rtol=1e-9, atol=1e-300)
    ess = w.sum() ** 2 / np.sum(w**2)
    assert summary["effective_sample_size"] == pytest.approx(ess, rel=1e-9)
    assert summary["sampling_efficiency"] == pytest.approx(ess / len(w), rel=1e-9)
    log_z = np.log(np.mean(w)) + log_w.max()
    assert summary["log_bayes_factor"] == pytest.approx(log_z, rel=1e-9)
    # prior densities against bilby's PriorDict
    finite = np.flatnonzero(np.isfinite(log_prior))[:20]
    names = sampled_parameters(prior)
    for i in finite:
        assert log_prior[i] == pytest.approx(
            prior.ln_prob({k: samples[k][i] for k in names}), rel=1e-9
        )

    # ln L of stored samples against bilby's likelihood on the same data
    ifos = bilby.gw.detector.InterferometerList(list(event.detectors))
    for ifo in ifos:
        ifo.minimum_frequency, ifo.maximum_frequency = 20, 256
        ifo.set_strain_data_from_frequency_domain_strain(
            event.strain[ifo.name], start_time=event.start_time, frequency_array=event.frequencies
        )
        ifo.power_spectral_density = bilby.gw.detector.PowerSpectralDensity(
            frequency_array=event.frequencies, psd_array=event.psd[ifo.name]
        )
    wg = bilby.gw.WaveformGenerator(
        duration=4,
        sampling_frequency=1024,
        start_time=event.start_time,
        frequency_domain_source_model=bilby.gw.source.lal_binary_black_hole,
        parameter_conversion=bilby.gw.conversion.convert_to_lal_binary_black_hole_parameters,
        waveform_arguments=dict(
            waveform_approximant="IMRPhenomXAS",
            reference_frequency=20.0,
            minimum_frequency=20.0,
            maximum_frequency=256.0,
        ),
    )
    likelihood = bilby.gw.GravitationalWaveTransient(ifos, wg)
    fixed = {k: float(p.peak) for k, p in prior.items() if k not in names}
    for i in finite[:5]:
        p = {**fixed, **{k: samples[k][i] for k in names}}
        p["geocent_time"] += event.trigger_time
        assert log_l[i] == pytest.approx(likelihood.log_likelihood_ratio(p), rel=1e-6)

    result = bilby.core.result.read_in_result(str(tmp_path / "result.json"))
    assert set(names) <= set(result.posterior.columns)
    assert result.log_bayes_factor == pytest.approx(summary["log_bayes_factor"])
    assert result.injection_parameters["chirp_mass"] == 28.0
    assert result.injection_parameters["geocent_time"] == pytest.approx(REFERENCE_TIME + 0.004)
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["runtime"]["total"] == pytest.approx(
        sum(saved["runtime"][k] for k in ("sampling", "likelihood", "refinement", "other"))
    )
    assert 0 <= saved["truth_quantile"]["chirp_mass"] <= 1
    assert saved["reliable"] is False and any(
        "effective sample size" in w for w in saved["warnings"]
    )


def test_phase_is_marginalized_and_reconstructed_when_the_model_does_not_infer_it(tmp_path):
    names = [n for n in sampled_parameters(build_prior(PRIOR)) if n != "phase"]
    model = tiny_model(tmp_path / "model.pt", names)
    prior = build_prior(PRIOR)
    posterior = analyse_event(
        injection(), model, prior, SETTINGS, processes=1, log=lambda *_: None
    )
    assert posterior.phase_marginalized and "phase" in posterior.parameters
    assert np.all((posterior.samples["phase"] >= 0) & (posterior.samples["phase"] < 2 * np.pi))
    with pytest.raises(ConfigError, match="phase-marginalization = 'off'"):
        analyse_event(
            injection(), model, prior, {**SETTINGS, "phase-marginalization": "off"}, processes=1
        )


def test_free_parameters_the_model_does_not_infer_are_drawn_from_their_prior(tmp_path):
    """A model without psi: psi ~ prior, so its density cancels from the weights (w = L pi / q)."""
    names = [n for n in sampled_parameters(build_prior(PRIOR)) if n != "psi"]
    model = tiny_model(tmp_path / "model.pt", names)
    prior = build_prior(PRIOR)
    no_refinement = {"target-ess": 1}  # the network's samples are the final ones
    posterior = analyse_event(
        injection(),
        model,
        prior,
        {**SETTINGS, "n-samples": 300, "refinement": no_refinement},
        processes=1,
        log=lambda *_: None,
    )
    assert posterior.refinement is None
    psi = posterior.samples["psi"]
    assert "psi" in posterior.parameters and np.all((psi >= 0) & (psi <= np.pi))
    import scipy.stats

    assert scipy.stats.kstest(psi / np.pi, "uniform").pvalue > 1e-3
    finite = np.isfinite(posterior.log_prior)
    expected = sum(np.asarray(prior[n].ln_prob(posterior.samples[n][finite])) for n in names)
    np.testing.assert_allclose(posterior.log_prior[finite], expected, rtol=1e-12)


def test_model_that_does_not_match_the_event_is_refused(model_path):
    from twinflow.gw.training.model import load_posterior_model

    model = load_posterior_model(model_path)
    prior = build_prior(PRIOR)
    quiet = dict(processes=1, log=lambda *_: None)
    with pytest.raises(
        ConfigError,
        match="duration = 8 s of event inj does not match the model checkpoint's duration = 4 s",
    ):
        analyse_event(injection(duration=8.0), model, prior, SETTINGS, **quiet)
    with pytest.raises(
        ConfigError, match="sampling-frequency = 2048 Hz .* does not match .* 1024 Hz"
    ):
        analyse_event(injection(**{"sampling-frequency": 2048.0}), model, prior, SETTINGS, **quiet)
    with pytest.raises(ConfigError, match="reaches outside the model's frequency domain"):
        analyse_event(
            injection(**{"maximum-frequency": {"H1": 300.0, "L1": 256.0}}),
            model,
            prior,
            SETTINGS,
            **quiet,
        )
    with pytest.raises(ConfigError, match=r"trained for \['H1', 'L1'\] only, not \['V1'\]"):
        analyse_event(
            injection()
            .with_analysis(("H1",))
            .__class__(**{**injection().__dict__, "detectors": ("H1", "V1")}),
            model,
            prior,
            SETTINGS,
            **quiet,
        )


def test_untrained_settings_warn(model_path):
    from twinflow.gw.training.model import load_posterior_model

    model = load_posterior_model(model_path)
    event = injection().with_analysis(("H1",), {"H1": 120.0}, {"H1": 256.0})
    posterior = analyse_event(
        event,
        model,
        build_prior(PRIOR),
        {**SETTINGS, "n-samples": 50},
        processes=1,
        log=lambda *_: None,
    )
    assert any(
        "minimum-frequency = 120 Hz was never seen in training" in w for w in posterior.warnings
    )


def test_run_event_on_real_strain_and_collect(shared_data, tmp_path):
    """GW170104 end to end with a model of the right shape: it finishes with clear warnings."""
    folder = shared_data / "gw" / "strain"
    catalogue = json.loads((folder / "events.json").read_text())
    e = catalogue["GW170104"]
    model_path = tmp_path / "model.pt"
    spec = {**PRIOR, "ra": {"distribution": "Uniform", "minimum": 0, "maximum": 6.283185307179586}}
    tiny_model(model_path, sampled_parameters(build_prior(spec)), spec=spec)
    strain = {
        "trigger-time": e["tevent"],
        "data-dict": {d: str(folder / e[f"fn_{d}"]) for d in ("H1", "L1")},
    }
    settings = strain_event_settings("GW170104", strain, spec, n_samples=200)
    summary = run_event(
        settings, model_path, tmp_path / "GW170104", processes=1, log=lambda *_: None
    )
    assert summary["reliable"] is False and summary["warnings"]
    assert (
        bilby.core.result.read_in_result(str(tmp_path / "GW170104" / "result.json")).label
        == "GW170104"
    )
    collected = collect_summaries(
        [tmp_path / "GW170104" / "summary.json"], tmp_path / "summary.json"
    )
    assert "GW170104" in collected["events"] and "injections" not in collected


def test_fixed_seed_reproduces_the_posterior(model_path):
    from twinflow.gw.training.model import load_posterior_model

    model = load_posterior_model(model_path)
    prior = build_prior(PRIOR)
    runs = [
        analyse_event(
            injection(),
            model,
            prior,
            {**SETTINGS, "n-samples": 200, "seed": seed},
            processes=1,
            log=lambda *_: None,
        )
        for seed in (5, 5, 6)
    ]
    np.testing.assert_array_equal(runs[0].log_q, runs[1].log_q)
    np.testing.assert_array_equal(runs[0].importance.weights, runs[1].importance.weights)
    assert not np.array_equal(runs[0].log_q, runs[2].log_q)
