"""Bad glitch settings, fed as a user would: one wrong value in the default config,
run through a stage's CLI by hand. Each must end with exit status 2 and one line naming the key
(or its value) before any work, writing nothing."""

from __future__ import annotations

import pytest

from tests.reliability.helpers import run_cli_with

DATA = ("glitch", "data")
GLITCH = ("glitch", "data", "glitch")
Q = ("glitch", "qtransform")
T = ("glitch", "translation")
V = ("glitch", "vae")

# (id, path into the config, bad value, text the message must contain)
GLITCH_CASES = [
    ("unknown-source", (*DATA, "source"), "web", "web"),
    ("unknown-noise-source", (*DATA, "noise-source"), "pink", "pink"),
    ("real-noise-without-files", (*DATA, "noise-source"), "real-recoloured", "real-noise"),
    ("zero-sampling-rate", (*DATA, "sampling-frequency"), 0, "sampling-frequency"),
    ("negative-duration", (*DATA, "duration"), -2, "-2"),
    ("zero-shards", (*DATA, "n-shards"), 0, "n-shards"),
    ("clean-fraction-above-one", (*DATA, "clean-fraction"), 1.5, "1.5"),
    ("unknown-noise-curve", (*DATA, "noise-curve"), "O9-dream", "O9-dream"),
    ("unknown-glitch-type", (*GLITCH, "types"), {"dragon": 1.0}, "dragon"),
    ("all-glitch-weights-zero", (*GLITCH, "types"), {"blip": 0.0}, "types"),
    ("inverted-snr-range", (*GLITCH, "snr"), [30, 5], "snr"),
    ("glitch-frequency-above-nyquist", (*GLITCH, "frequency"), [30, 900], "900"),
    ("coupling-gain-negative", ("glitch", "data", "coupling", "gain"), [1.0, -0.7, 1.3], "gain"),
    ("coupling-too-few-channels", ("glitch", "data", "coupling", "gain"), [1.0], "gain"),
    ("chirp-fraction-above-one", ("glitch", "data", "chirps", "fraction"), 2.0, "2.0"),
    ("frange-above-nyquist", (*Q, "frange"), [20, 900], "900"),
    ("qrange-inverted", (*Q, "qrange"), [32, 4], "qrange"),
    ("unknown-norm", (*Q, "norm"), "loudness", "loudness"),
    ("split-not-summing-to-one", (*Q, "split"), [0.7, 0.7, 0.15], "split"),
    ("unknown-translation-model", (*T, "model"), "transformer-xl", "transformer-xl"),
    ("unknown-translation-loss", (*T, "loss"), "hinge", "hinge"),
    ("zero-translation-epochs", (*T, "epochs"), 0, "epochs"),
    ("negative-learning-rate", (*T, "learning-rate"), -0.01, "-0.01"),
    ("unknown-device", (*T, "device"), "tpu", "tpu"),
    ("unknown-vae-covariance", (*V, "covariance"), "banded", "banded"),
    ("vae-bce-without-sigmoid", (*V, "loss"), "bce", "output-activation"),
    ("negative-beta", (*V, "beta"), -1.0, "-1.0"),
    ("unknown-vae-score", (*V, "score"), "vibes", "vibes"),
    ("misspelt-vae-key", (*V, "latent_dim"), 16, "latent_dim"),
    ("zero-latent-dim", (*V, "latent-dim"), 0, "latent-dim"),
]


@pytest.mark.parametrize(
    "path, value, expected", [c[1:] for c in GLITCH_CASES], ids=[c[0] for c in GLITCH_CASES]
)
def test_bad_glitch_setting_stops_the_cli_before_any_work(tmp_path, path, value, expected):
    out = tmp_path / "out" / "shard-0.h5"
    status, message = run_cli_with(
        tmp_path, path, value, ["glitch", "simulate", "--shard", "0", "--out", str(out)]
    )
    assert status == 2, message
    assert len(message.strip().splitlines()) == 1 and "Traceback" not in message, message
    assert expected in message, message
    assert not (tmp_path / "out").exists()
