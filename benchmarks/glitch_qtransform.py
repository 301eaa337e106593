"""Q-plot images per second per core: twinflow's batched Q-transform against gwpy's
``TimeSeries.q_transform`` called one image at a time, on the same whitened data and the same
settings (so both produce the same images; tests/glitch/test_qtransform.py checks that).

    python benchmarks/glitch_qtransform.py [--config config/config.yaml] [--images 256]

Both run on one core (BLAS/FFT threads pinned to 1). Prints images/s for each and the ratio.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="config/config.yaml")
    parser.add_argument("--images", type=int, default=256, help="images per method")
    parser.add_argument("--repeats", type=int, default=3, help="best of this many timings")
    args = parser.parse_args()

    from gwpy.timeseries import TimeSeries

    from twinflow.core.noise import coloured_noise
    from twinflow.core.settings import load_yaml
    from twinflow.glitch.data import sine_gaussian, strain_psd
    from twinflow.glitch.qtransform import transform_for

    glitch = load_yaml(args.config)["glitch"]
    data, q = glitch["data"], {**glitch["qtransform"], "norm": "median"}  # gwpy's normalisation
    fs, duration = data["sampling-frequency"], data["duration"]
    n = int(fs * duration)
    _, psd = strain_psd(data)
    rng = np.random.default_rng(0)
    t = np.arange(n) / fs - duration / 2
    series = coloured_noise(np.broadcast_to(psd, (args.images, len(psd))), n, fs, rng)
    series += 1e-21 * sine_gaussian(t, 100.0, 8.0, 0.0)  # a loud glitch in every series
    white = np.fft.irfft(
        np.fft.rfft(series, axis=-1) / np.sqrt(psd), n=n, axis=-1
    )  # same input for both
    white -= white.mean(axis=-1, keepdims=True)

    qt = transform_for(q, fs, duration)
    half = q["window"] / 2

    def ours():
        return qt(white)

    def gwpy_one_at_a_time():
        out = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for x in white:
                spec = TimeSeries(x, t0=0, sample_rate=fs).q_transform(
                    qrange=tuple(q["qrange"]),
                    frange=tuple(q["frange"]),
                    gps=duration / 2,
                    search=q["window"],
                    tres=q["window"] / q["image-size"],
                    fres=q["image-size"],
                    logf=True,
                    mismatch=q["mismatch"],
                    outseg=(duration / 2 - half, duration / 2 + half),
                    whiten=False,
                    norm="median",
                )
                out.append(spec.value.T[:, : q["image-size"]])
        return np.stack(out)

    timings = {}
    for name, fn in (
        ("twinflow batched", ours),
        ("gwpy q_transform, one at a time", gwpy_one_at_a_time),
    ):
        best = np.inf
        for _ in range(args.repeats):
            start = time.perf_counter()
            images = fn()
            best = min(best, time.perf_counter() - start)
        timings[name] = (best, images)
    (t_ours, a), (t_gwpy, b) = timings.values()
    print(
        f"{args.images} images of {q['image-size']}x{q['image-size']}, {duration:g} s at {fs:g} Hz, "
        f"qrange {q['qrange']}, frange {q['frange']} Hz, 1 core"
    )
    for name, (seconds, _) in timings.items():
        print(f"  {name:34s} {args.images / seconds:9.1f} images/s")
    print(
        f"  ratio (twinflow / gwpy): {t_gwpy / t_ours:.1f}x; max |difference| / max "
        f"{np.abs(a - b).max() / b.max():.1e}"
    )


if __name__ == "__main__":
    main()
