"""Wall time of one event: sampling plus importance sampling of 10^4 samples on the usable cores.

The model is the trained one (``--model``, default ``results/gw/train/model.pt``) or, if there
is none, a randomly initialised model of the configured architecture (``--config``): timing
depends on the architecture, not the weights. The event is an injection in noise from the
configured PSD curves. Printed: the split into sampling, likelihood and the rest, and, as the
peer measured in the same run, the time bilby's ``GravitationalWaveTransient`` needs for the
same likelihood evaluations one by one (measured on ``--bilby-samples`` and scaled).

Run: ``python benchmarks/gw_inference.py [--n 10000] [--config config/config.yaml]``.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np


def build_model(config: dict, model_path: Path):
    import torch

    from twinflow.gw.domain import MultibandedFrequencyDomain
    from twinflow.gw.prior import build_prior
    from twinflow.gw.training.model import (
        PosteriorModel,
        build_model_settings,
        load_posterior_model,
    )

    if model_path.is_file():
        return load_posterior_model(model_path), "trained model " + str(model_path)
    gw = config["gw"]
    prior = build_prior(gw["dataset"]["prior"])
    names = gw["train"].get("parameters") or [
        k for k, p in prior.items() if type(p).__name__ != "DeltaFunction"
    ]
    mean = [float(np.mean(prior[n].sample(10000))) for n in names]
    std = [float(np.std(prior[n].sample(10000))) for n in names]
    nodes = gw["dataset"]["domain"]["nodes"]
    if (
        nodes == "auto"
    ):  # the CPU default's nodes are proposed from waveforms; any valid grid times the same
        nodes = [20.0, 72.0, 96.0, 128.0, 192.0, 256.0]
    domain = MultibandedFrequencyDomain(nodes, gw["duration"], gw["sampling-frequency"])
    settings = build_model_settings(
        parameters=names,
        mean=mean,
        std=std,
        detectors=gw["detectors"],
        frequency_scale=gw["maximum-frequency"],
        architecture=gw["train"]["model"],
        seed=0,
        inputs={
            "detectors": gw["detectors"],
            "domain": domain.settings,
            "reference-time": gw["dataset"]["reference-time"],
            "post-trigger-duration": gw["dataset"]["post-trigger-duration"],
            "minimum-frequency": gw["minimum-frequency"],
            "maximum-frequency": gw["maximum-frequency"],
            "masks": gw["dataset"]["masks"],
        },
    )
    torch.manual_seed(0)
    return PosteriorModel(settings).eval(), "untrained model of the configured architecture"


def main() -> None:
    import bilby

    from twinflow.core.noise import source_psd
    from twinflow.core.settings import load_yaml
    from twinflow.gw.inference.injections import make_injection
    from twinflow.gw.inference.posterior import analyse_event
    from twinflow.gw.prior import build_prior, sample
    from twinflow.gw.validation import resolve_analysis

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="samples per event")
    parser.add_argument("--config", default="config/config.yaml")
    parser.add_argument("--model", default="results/gw/train/model.pt")
    parser.add_argument("--bilby-samples", type=int, default=300)
    args = parser.parse_args()
    bilby.core.utils.logger.setLevel("ERROR")
    config = load_yaml(args.config)
    gw = config["gw"]
    model, what = build_model(config, Path(args.model))
    cores = len(os.sched_getaffinity(0))

    analysis = resolve_analysis(
        {},
        {
            k: gw[k]
            for k in (
                "detectors",
                "duration",
                "sampling-frequency",
                "minimum-frequency",
                "maximum-frequency",
            )
        },
        "gw",
    )
    fs, duration = analysis["sampling-frequency"], analysis["duration"]
    grid = np.linspace(0, fs / 2, int(fs * duration) // 2 + 1)
    curves = gw["psd"]["simulation"]["curves"]
    psds = {d: source_psd(curves[d], grid, 10.0) for d in analysis["detectors"]}
    prior = build_prior(gw["dataset"]["prior"])
    rng = np.random.default_rng(3)
    truth = {k: float(v[0]) for k, v in sample(prior, 1, rng).items()}
    settings = {
        "n-samples": args.n,
        "batch-size": 5000,
        "seed": 1,
        "device": "cpu",
        "phase-marginalization": "auto",
        "tukey-roll-off": 0.4,
        "approximant": gw["dataset"]["approximant"],
        "reference-frequency": gw["dataset"]["reference-frequency"],
    }
    event = make_injection(
        "benchmark",
        truth,
        psds,
        analysis,
        settings,
        gw["dataset"]["reference-time"],
        gw["dataset"]["post-trigger-duration"],
        rng,
    )
    print(
        f"{what}; {len(model.parameter_names)} parameters; event SNR {event.metadata['network-optimal-snr']:.1f}; "
        f"{cores} cores"
    )
    t = time.perf_counter()
    posterior = analyse_event(event, model, prior, settings, processes=cores, log=lambda *_: None)
    wall = time.perf_counter() - t
    timings = posterior.timings
    n_likelihood = int(np.sum(np.isfinite(posterior.log_prior)))

    # the peer: bilby's likelihood, sample by sample, on the same data (scaled to the same count)
    start = event.start_time
    ifos = bilby.gw.detector.InterferometerList(list(event.detectors))
    for ifo in ifos:
        ifo.minimum_frequency = event.minimum_frequency[ifo.name]
        ifo.maximum_frequency = event.maximum_frequency[ifo.name]
        ifo.set_strain_data_from_frequency_domain_strain(
            event.strain[ifo.name], start_time=start, frequency_array=event.frequencies
        )
        ifo.power_spectral_density = bilby.gw.detector.PowerSpectralDensity(
            frequency_array=event.frequencies, psd_array=event.psd[ifo.name]
        )
    wg = bilby.gw.WaveformGenerator(
        duration=duration,
        sampling_frequency=fs,
        start_time=start,
        frequency_domain_source_model=bilby.gw.source.lal_binary_black_hole,
        parameter_conversion=bilby.gw.conversion.convert_to_lal_binary_black_hole_parameters,
        waveform_arguments=dict(
            waveform_approximant=settings["approximant"],
            reference_frequency=settings["reference-frequency"],
            minimum_frequency=min(event.minimum_frequency.values()),
            maximum_frequency=max(event.maximum_frequency.values()),
        ),
    )
    likelihood = bilby.gw.GravitationalWaveTransient(
        ifos,
        wg,
        phase_marginalization=posterior.phase_marginalized,
        priors=bilby.gw.prior.BBHPriorDict(aligned_spin=True)
        if posterior.phase_marginalized
        else None,
    )
    fixed = {k: float(p.peak) for k, p in prior.items() if type(p).__name__ == "DeltaFunction"}
    inside = np.flatnonzero(np.isfinite(posterior.log_prior))[: args.bilby_samples]
    t = time.perf_counter()
    for i in inside:
        p = {**fixed, **{k: posterior.samples[k][i] for k in posterior.parameters}}
        p["geocent_time"] = event.trigger_time + p.get("geocent_time", 0.0)
        likelihood.log_likelihood_ratio(p)
    bilby_per_sample = (time.perf_counter() - t) / len(inside)

    print(
        f"one event, {args.n} samples ({n_likelihood} inside the prior, likelihood evaluated for those):"
    )
    for key in ("sampling", "likelihood", "other", "total"):
        print(f"  {key:10s} {timings[key]:7.2f} s")
    print(
        f"  wall (analyse_event) {wall:.2f} s; sampling efficiency {posterior.importance.sampling_efficiency:.3%}"
    )
    print(
        f"  bilby, one sample at a time on one core: {bilby_per_sample * 1e3:.3f} ms/sample -> "
        f"{bilby_per_sample * n_likelihood:.2f} s for the same evaluations (measured on {len(inside)}); "
        f"ours {timings['likelihood']:.2f} s on {cores} cores: {bilby_per_sample * n_likelihood / timings['likelihood']:.1f}x"
    )


if __name__ == "__main__":
    main()
