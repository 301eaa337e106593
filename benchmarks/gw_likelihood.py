"""Speed of the batched GW likelihood, as ratios against peers measured in the same run.

Per problem (an injection in bilby's own noise, samples spread around it):

- bilby: ``GravitationalWaveTransient.log_likelihood_ratio`` called sample by sample (the peer);
- floor: ``SimInspiralChooseFDWaveform`` alone, with precomputed arguments (what any exact
  likelihood must at least spend);
- ours: :class:`twinflow.gw.inference.likelihood.GaussianLikelihood` in one process (per-core cost) and
  over all usable cores (wall-clock throughput).

Per-core costs are process CPU time (best of ``--repeats``, interleaved), so other jobs on a
shared machine inflate them less than wall time. Target: ours >= 3x bilby per core, close to
the floor. The script also checks that ours equals bilby's (relative 1e-6).

Run: ``python benchmarks/gw_likelihood.py [--n 400] [--repeats 3] [--quick]``.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

PROBLEMS = {
    # name: detectors, duration, sampling frequency, f_min, f_max, approximant
    "CPU default (H1 L1, T = 4 s, 20-256 Hz, IMRPhenomXAS)": (
        ("H1", "L1"),
        4,
        1024,
        20.0,
        256.0,
        "IMRPhenomXAS",
    ),
    "CPU default, phase-marginalised": (("H1", "L1"), 4, 1024, 20.0, 256.0, "IMRPhenomXAS"),
    "Dingo-T1 band (H1 L1 V1, T = 8 s, 20-1810 Hz, IMRPhenomXAS)": (
        ("H1", "L1", "V1"),
        8,
        4096,
        20.0,
        1810.0,
        "IMRPhenomXAS",
    ),
    "Dingo-T1 (H1 L1 V1, T = 8 s, 20-1810 Hz, IMRPhenomXPHM)": (
        ("H1", "L1", "V1"),
        8,
        4096,
        20.0,
        1810.0,
        "IMRPhenomXPHM",
    ),
}
TRIGGER = 1126259462.4


def build(detectors, duration, fs, f_min, f_max, approximant, precessing, phase_marginalization):
    import bilby

    from twinflow.gw.inference.events import EventData

    bilby.core.utils.logger.setLevel("ERROR")
    bilby.core.utils.random.seed(1)
    start = TRIGGER - (duration - 2)
    wg = bilby.gw.WaveformGenerator(
        duration=duration,
        sampling_frequency=fs,
        start_time=start,
        frequency_domain_source_model=bilby.gw.source.lal_binary_black_hole,
        parameter_conversion=bilby.gw.conversion.convert_to_lal_binary_black_hole_parameters,
        waveform_arguments=dict(
            waveform_approximant=approximant,
            reference_frequency=20.0,
            minimum_frequency=f_min,
            maximum_frequency=f_max,
        ),
    )
    ifos = bilby.gw.detector.InterferometerList(list(detectors))
    for ifo in ifos:
        ifo.minimum_frequency, ifo.maximum_frequency = f_min, f_max
    ifos.set_strain_data_from_power_spectral_densities(
        sampling_frequency=fs, duration=duration, start_time=start
    )
    truth = dict(
        chirp_mass=28.0,
        mass_ratio=0.8,
        theta_jn=0.6,
        phase=1.3,
        luminosity_distance=800.0,
        ra=1.2,
        dec=-0.4,
        psi=0.7,
        geocent_time=TRIGGER,
    )
    truth.update(
        dict(a_1=0.3, a_2=0.2, tilt_1=0.5, tilt_2=1.0, phi_12=1.0, phi_jl=0.5)
        if precessing
        else dict(chi_1=0.3, chi_2=-0.2)
    )
    ifos.inject_signal(parameters=truth, waveform_generator=wg, raise_error=False)
    kwargs = (
        {"phase_marginalization": True, "priors": bilby.gw.prior.BBHPriorDict(aligned_spin=True)}
        if phase_marginalization
        else {}
    )
    likelihood = bilby.gw.GravitationalWaveTransient(ifos, wg, **kwargs)
    data = EventData(
        name="benchmark",
        detectors=tuple(detectors),
        trigger_time=TRIGGER,
        start_time=start,
        duration=float(duration),
        sampling_frequency=float(fs),
        minimum_frequency={d: f_min for d in detectors},
        maximum_frequency={d: f_max for d in detectors},
        strain={i.name: i.frequency_domain_strain.copy() for i in ifos},
        psd={i.name: i.power_spectral_density_array.copy() for i in ifos},
    )
    return likelihood, data, truth


def draw(truth, n, precessing, seed=0):
    rng = np.random.default_rng(seed)
    p = {k: np.full(n, v) for k, v in truth.items()}
    p["chirp_mass"] = truth["chirp_mass"] + rng.normal(0, 0.5, n)
    p["mass_ratio"] = rng.uniform(0.5, 1.0, n)
    p["theta_jn"] = np.arccos(rng.uniform(-1, 1, n))
    p["phase"] = rng.uniform(0, 2 * np.pi, n)
    p["luminosity_distance"] = rng.uniform(200, 1500, n)
    p["psi"] = rng.uniform(0, np.pi, n)
    p["ra"] = truth["ra"] + rng.normal(0, 0.1, n)
    p["dec"] = truth["dec"] + rng.normal(0, 0.1, n)
    p["geocent_time"] = TRIGGER + rng.uniform(-0.01, 0.01, n)
    if precessing:
        p["a_1"], p["a_2"] = rng.uniform(0, 0.8, n), rng.uniform(0, 0.8, n)
        p["tilt_1"], p["tilt_2"] = (
            np.arccos(rng.uniform(-1, 1, n)),
            np.arccos(rng.uniform(-1, 1, n)),
        )
    else:
        p["chi_1"], p["chi_2"] = rng.uniform(-0.8, 0.8, n), rng.uniform(-0.8, 0.8, n)
    return p


def cpu_time(fn) -> float:
    t = time.process_time()
    fn()
    return time.process_time() - t


def floor_call(data, approximant, parameters):
    """Return a function making every waveform with SimInspiralChooseFDWaveform, arguments precomputed."""
    import lal
    import lalsimulation as lalsim
    from bilby.core.utils import parsec

    from twinflow.gw.inference.polarisations import LAL_ARGUMENTS
    from twinflow.gw.waveforms import lal_parameters

    lal_p = lal_parameters(parameters, 20.0, reference_distance=1.0)
    lal_p["luminosity_distance"] = parameters["luminosity_distance"] * 1e6 * parsec
    rows = list(zip(*[np.asarray(lal_p[k], dtype=float).tolist() for k in LAL_ARGUMENTS]))
    number = lalsim.GetApproximantFromString(approximant)
    f_min = min(data.minimum_frequency.values())
    f_max = max(data.maximum_frequency.values())
    fixed = (0.0, 0.0, 0.0, 1 / data.duration, f_min, f_max, 20.0, lal.CreateDict(), number)

    def run():
        for args in rows:
            lalsim.SimInspiralChooseFDWaveform(*args, *fixed)

    return run


def main() -> None:
    from twinflow.gw.inference.likelihood import GaussianLikelihood

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--n", type=int, default=400, help="samples per measurement (XPHM: n / 10)"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--quick", action="store_true", help="CPU default problem only, fewer samples"
    )
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    problems = dict(list(PROBLEMS.items())[:2]) if args.quick else PROBLEMS
    n_default = 150 if args.quick else args.n
    print(f"usable cores: {cores}; per-core costs are process CPU time, best of {args.repeats}\n")
    rows = []
    for name, (detectors, duration, fs, f_min, f_max, approximant) in problems.items():
        precessing = approximant.endswith("PHM") or approximant.endswith("Pv2")
        marginalize = "phase-marginalised" in name
        n = max(20, n_default // 10) if approximant.endswith("PHM") else n_default
        bilby_likelihood, data, truth = build(
            detectors, duration, fs, f_min, f_max, approximant, precessing, marginalize
        )
        parameters = draw(truth, n, precessing)
        per_sample = [{k: v[i] for k, v in parameters.items()} for i in range(n)]
        ours = GaussianLikelihood(
            data, approximant, 20.0, phase_marginalization=marginalize, processes=1, chunk_size=128
        )
        pooled = GaussianLikelihood(
            data,
            approximant,
            20.0,
            phase_marginalization=marginalize,
            processes=cores,
            chunk_size=max(16, n // (4 * cores)),
        )
        ours.log_likelihood_ratio({k: v[:4] for k, v in parameters.items()})  # warm up imports
        pooled.log_likelihood_ratio(parameters)  # start the workers
        floor = floor_call(data, approximant, parameters)
        times = {"bilby": [], "ours": [], "floor": [], "ours, all cores (wall)": []}
        for _ in range(args.repeats):
            times["bilby"].append(
                cpu_time(lambda: [bilby_likelihood.log_likelihood_ratio(p) for p in per_sample])
            )
            times["ours"].append(cpu_time(lambda: ours.log_likelihood_ratio(parameters)))
            times["floor"].append(cpu_time(floor))
            t = time.perf_counter()
            pooled.log_likelihood_ratio(parameters)
            times["ours, all cores (wall)"].append(time.perf_counter() - t)
        reference = np.array([bilby_likelihood.log_likelihood_ratio(p) for p in per_sample])
        mismatch = np.max(
            np.abs(ours.log_likelihood_ratio(parameters) - reference)
            / np.maximum(np.abs(reference), 1e-300)
        )
        pooled.close()
        best = {k: min(v) / n * 1e3 for k, v in times.items()}  # ms per sample
        print(name)
        for k, v in best.items():
            print(f"  {k:24s} {v:8.3f} ms/sample  ({1e3 / v:8.0f} /s)")
        print(
            f"  ours vs bilby per core: {best['bilby'] / best['ours']:.2f}x faster; ours / floor: "
            f"{best['ours'] / best['floor']:.2f}; all {cores} cores vs bilby on one: "
            f"{best['bilby'] / best['ours, all cores (wall)']:.2f}x; max |relative difference| {mismatch:.1e}\n"
        )
        rows.append((name, best))
    print(
        "summary (per core): "
        + "; ".join(
            f"{name.split(' (')[0]}: {b['bilby'] / b['ours']:.1f}x bilby, "
            f"{b['ours'] / b['floor']:.2f}x floor"
            for name, b in rows
        )
    )


if __name__ == "__main__":
    main()
