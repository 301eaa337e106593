"""Speed of the gw dataset stage, as ratios against peers measured in the same run.

1. Waveforms per second per core: ``WaveformGenerator`` (bilby's conversions, vectorised;
   LALSimulation; decimation onto the multibanded domain) against calling
   ``SimInspiralChooseFDWaveform`` directly with precomputed arguments (the floor), and
   against bilby's ``lal_binary_black_hole``. Target: >= 0.9 of the floor.
2. Batch assembly (extrinsic draws, projection, PSD choice, noise, whitening, tokens, masks)
   in samples/s, against the same done per sample with bilby (``get_detector_response`` +
   numpy noise) on the multibanded grid.

Run: ``python benchmarks/gw_dataset.py [--device auto] [--quick]``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from twinflow.core.noise import source_psd
from twinflow.core.settings import load_yaml
from twinflow.gw.dataset.batches import BatchAssembler
from twinflow.gw.dataset.tokens import multibanded_psd_bank
from twinflow.gw.domain import MultibandedFrequencyDomain
from twinflow.gw.prior import build_prior, sample, split_prior
from twinflow.gw.psd import PSDBank
from twinflow.gw.settings import batch_settings_for
from twinflow.gw.waveforms import LAL_ARGUMENTS, WaveformGenerator, lal_parameters

PROBLEMS = {
    # name: (duration, sampling frequency, nodes, approximant, prior spec from)
    "CPU default (T = 4 s, 20-256 Hz, IMRPhenomXAS)": (
        4,
        1024,
        [20.0, 72.0, 96.0, 128.0, 192.0, 256.0],
        "IMRPhenomXAS",
        "config/config.yaml",
    ),
    "CPU default with IMRPhenomD": (
        4,
        1024,
        [20.0, 72.0, 96.0, 128.0, 192.0, 256.0],
        "IMRPhenomD",
        "config/config.yaml",
    ),
    "Dingo-T1 (T = 8 s, 20-1810 Hz, IMRPhenomXPHM)": (
        8,
        4096,
        [20, 38, 50, 66, 82, 1810],
        "IMRPhenomXPHM",
        "config/production.yaml",
    ),
}


def best_of(fn, repeats: int, clock=time.perf_counter) -> float:
    times = []
    for _ in range(repeats):
        t = clock()
        fn()
        times.append(clock() - t)
    return min(times)


def cpu_best_of(fn, repeats: int) -> float:
    """CPU time of this process (one thread): per-core cost, unaffected by other jobs' load."""
    return best_of(fn, repeats, time.process_time)


def waveform_speed(n: int, repeats: int) -> None:
    import lalsimulation as lalsim
    from bilby.gw.conversion import convert_to_lal_binary_black_hole_parameters
    from bilby.gw.source import lal_binary_black_hole

    print(
        "1. waveforms per second per core (process CPU time; complex64 as in the shards;"
        f" interleaved, best of {repeats})"
    )
    for name, (duration, fs, nodes, approximant, config) in PROBLEMS.items():
        domain = MultibandedFrequencyDomain(nodes, duration, fs)
        spec = load_yaml(config)["gw"]["dataset"]["prior"]
        intrinsic, _ = split_prior(build_prior(spec))
        m = n if approximant != "IMRPhenomXPHM" else max(20, n // 20)
        params = sample(intrinsic, m, np.random.default_rng(0))
        generator = WaveformGenerator(domain, approximant, 20.0, 100.0)

        lal = lal_parameters(params, 20.0, 100.0)
        columns = [lal[k].tolist() for k in LAL_ARGUMENTS]
        number = lalsim.GetApproximantFromString(approximant)
        waveform_dictionary = generator._waveform_dictionary()
        args = list(zip(*columns))

        def floor():
            for a in args:
                lalsim.SimInspiralChooseFDWaveform(
                    *a,
                    0.0,
                    0.0,
                    0.0,
                    domain.base.delta_f,
                    domain.f_min,
                    domain.f_max,
                    20.0,
                    waveform_dictionary,
                    number,
                )

        converted, _ = convert_to_lal_binary_black_hole_parameters(
            {k: v.copy() for k, v in params.items()}
        )
        keys = (
            "mass_1",
            "mass_2",
            "a_1",
            "tilt_1",
            "phi_12",
            "a_2",
            "tilt_2",
            "phi_jl",
            "theta_jn",
            "phase",
        )
        rows = [
            {k: float(np.broadcast_to(converted.get(k, 0.0), (m,))[i]) for k in keys}
            for i in range(m)
        ]
        f = domain.base.frequencies

        def bilby_loop():
            for row in rows:
                lal_binary_black_hole(
                    f,
                    **row,
                    luminosity_distance=100.0,
                    waveform_approximant=approximant,
                    reference_frequency=20.0,
                    minimum_frequency=domain.f_min,
                    maximum_frequency=domain.f_max,
                )

        # Interleaved, best of each: the machine is shared, so load drifts between runs.
        times = {"ours": [], "floor": [], "bilby": []}
        for _ in range(repeats):
            times["ours"].append(cpu_best_of(lambda: generator(params, dtype=np.complex64), 1) / m)
            times["floor"].append(cpu_best_of(floor, 1) / m)
            times["bilby"].append(cpu_best_of(bilby_loop, 1) / m)
        ours, lal_floor, bilby_time = (min(times[k]) for k in ("ours", "floor", "bilby"))
        print(f"  {name}: {domain.n_bins} bins")
        print(
            f"    twinflow {1 / ours:9.0f}/s   lalsimulation floor {1 / lal_floor:9.0f}/s   "
            f"bilby lal_binary_black_hole {1 / bilby_time:9.0f}/s"
        )
        print(
            f"    ratio to the floor: {lal_floor / ours:.2f} (target >= 0.9);  "
            f"speed-up over bilby's source model: {bilby_time / ours:.2f}x"
        )


def batch_speed(device: str, batch_size: int, repeats: int) -> None:
    import bilby

    print(f"2. batch assembly, CPU default problem, batch {batch_size}, device {device}")
    config = load_yaml("config/config.yaml")["gw"]
    duration, fs, nodes = 4, 1024, [20.0, 72.0, 96.0, 128.0, 192.0, 256.0]
    domain = MultibandedFrequencyDomain(nodes, duration, fs)
    f = domain.base.frequencies
    banks = {
        d: PSDBank(
            d, f, np.stack([s * source_psd("aLIGO-O3-low", f, 10.0) for s in (0.8, 1.0, 1.2)]), {}
        )
        for d in config["detectors"]
    }
    intrinsic, extrinsic = split_prior(build_prior(config["dataset"]["prior"]))
    params = sample(intrinsic, batch_size, np.random.default_rng(1))
    h_plus, h_cross = WaveformGenerator(domain, "IMRPhenomXAS", 20.0, 100.0)(params)
    block = {
        "h_plus": h_plus.astype(np.complex64),
        "h_cross": h_cross.astype(np.complex64),
        **params,
    }
    assembler = BatchAssembler(
        batch_settings_for(config), domain, banks, 100.0, list(params), device=device
    )
    assembler(block)  # warm up

    def ours():
        batch = assembler(block)
        if assembler.device.type == "cuda":
            torch.cuda.synchronize()
        return batch

    t_ours = best_of(ours, repeats) / batch_size

    ifos = bilby.gw.detector.InterferometerList(config["detectors"])
    start = config["dataset"]["reference-time"] - (
        duration - config["dataset"]["post-trigger-duration"]
    )
    ifos.set_strain_data_from_zero_noise(fs, duration, start_time=start)
    psd_mfd = {d: multibanded_psd_bank(banks[d], domain) for d in config["detectors"]}
    n_ref = min(batch_size, 256)
    ex = sample(extrinsic, n_ref, np.random.default_rng(2))
    rng = np.random.default_rng(3)

    def per_sample():
        for i in range(n_ref):
            p = {k: v[i] for k, v in ex.items()}
            p["geocent_time"] += config["dataset"]["reference-time"]
            for ifo in ifos:
                s = ifo.get_detector_response(
                    {"plus": h_plus[i], "cross": h_cross[i]},
                    p,
                    frequencies=domain.sample_frequencies,
                )
                psd = psd_mfd[ifo.name][rng.integers(3)]
                sigma = np.sqrt(psd / (4 * domain.delta_f))
                _ = s / sigma + rng.standard_normal(len(s)) + 1j * rng.standard_normal(len(s))

    t_ref = best_of(per_sample, max(1, repeats // 2)) / n_ref
    print(
        f"  twinflow BatchAssembler {1 / t_ours:9.0f} samples/s   per-sample bilby + numpy {1 / t_ref:9.0f} samples/s"
    )
    print(f"  ratio: {t_ref / t_ours:.1f}x (tokens {assembler.n_tokens} per sample before masks)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--device", default="cpu", help="device for batch assembly (auto, cpu, cuda)"
    )
    parser.add_argument("--quick", action="store_true", help="fewer waveforms and repeats")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    n, repeats = (200, 3) if args.quick else (1000, 5)
    waveform_speed(n, repeats)
    batch_speed(args.device, 512 if args.quick else 2048, repeats)


if __name__ == "__main__":
    main()
