"""Bad gw inputs, fed as a user would: a config file with one wrong value, run through the CLI.

Each must end with exit status 2 and one line that names the key and the offending value,
before any work: nothing written, nothing removed. The same checks run when the Snakefile is
parsed (tests/reliability/test_workflow_bad_inputs.py).
"""

from __future__ import annotations

import copy

import pytest

from tests.reliability.helpers import DELETE, GOOD_CONFIG, run_cli_with

GOOD = GOOD_CONFIG["gw"]
PRIOR = ("gw", "dataset", "prior")
MASKS = ("gw", "dataset", "masks")

# (id, path into the config, bad value, text the message must contain)
CASES = [
    # the analysis band and detectors
    ("unknown-detector", ("gw", "detectors"), ["H1", "X9"], "X9"),
    ("no-detectors", ("gw", "detectors"), [], "detectors"),
    ("negative-duration", ("gw", "duration"), -4, "-4"),
    ("zero-sampling-rate", ("gw", "sampling-frequency"), 0, "sampling-frequency"),
    ("fmax-above-nyquist", ("gw", "maximum-frequency"), 600, "600"),
    ("fmin-above-fmax", ("gw", "minimum-frequency"), 300, "300"),
    ("fmin-string", ("gw", "minimum-frequency"), "twenty", "twenty"),
    ("misspelt-top-key", ("gw", "detektors"), ["H1"], "detektors"),
    # dataset
    ("unknown-approximant", ("gw", "dataset", "approximant"), "IMRPhenomZZ", "IMRPhenomZZ"),
    ("time-domain-approximant", ("gw", "dataset", "approximant"), "TaylorT4", "TaylorT4"),
    ("zero-shards", ("gw", "dataset", "n-shards"), 0, "n-shards"),
    ("fractional-shard-size", ("gw", "dataset", "shard-size"), 10.5, "10.5"),
    ("negative-reference-distance", ("gw", "dataset", "reference-distance"), -1, "-1"),
    ("nodes-not-on-band", ("gw", "dataset", "domain", "nodes"), [25, 256], "nodes"),
    ("tolerance-above-one", ("gw", "dataset", "domain", "tolerance"), 2.0, "2.0"),
    ("misspelt-dataset-key", ("gw", "dataset", "shardsize"), 10, "shardsize"),
    ("post-trigger-beyond-duration", ("gw", "dataset", "post-trigger-duration"), 9, "9"),
    # the prior
    ("negative-distance", (*PRIOR, "luminosity_distance", "minimum"), -200, "-200"),
    ("inverted-distance", (*PRIOR, "luminosity_distance", "minimum"), 2000, "2000"),
    ("mass-ratio-above-one", (*PRIOR, "mass_ratio", "maximum"), 1.5, "1.5"),
    ("negative-chirp-mass", (*PRIOR, "chirp_mass", "minimum"), -5, "-5"),
    ("spin-above-one", (*PRIOR, "chi_1", "maximum"), 1.2, "1.2"),
    ("dec-beyond-pole", (*PRIOR, "dec"), 2.0, "2.0"),
    ("ra-beyond-2pi", (*PRIOR, "ra"), 7.0, "7.0"),
    ("unknown-distribution", (*PRIOR, "psi", "distribution"), "Gaussianish", "Gaussianish"),
    ("unknown-parameter", (*PRIOR, "spin_magic"), 0.1, "spin_magic"),
    ("infinite-bound", (*PRIOR, "chi_2", "maximum"), float("inf"), "inf"),
    ("missing-extrinsic", (*PRIOR, "psi"), DELETE, "psi"),
    ("prior-as-code", (*PRIOR, "theta_jn"), "__import__('os')", "theta_jn"),
    # masks
    ("drop-probabilities-all-zero", (*MASKS, "detector-drop-probabilities"), [0, 0], "0, 0"),
    ("mask-probability-above-one", (*MASKS, "notches", "probability"), 1.5, "1.5"),
    ("mask-fmin-outside-band", (*MASKS, "minimum-frequency", "maximum"), 500, "500"),
    ("notch-count-zero", (*MASKS, "notches", "max-count"), 0, "max-count"),
    # training
    ("batch-size-one", ("gw", "train", "batch-size"), 1, "batch-size"),
    ("zero-epochs", ("gw", "train", "epochs"), 0, "epochs"),
    ("negative-learning-rate", ("gw", "train", "learning-rate"), -0.001, "-0.001"),
    ("unknown-scheduler", ("gw", "train", "scheduler"), "warp", "warp"),
    ("unknown-device", ("gw", "train", "device"), "tpu", "tpu"),
    ("heads-not-dividing", ("gw", "train", "model", "transformer", "heads"), 3, "heads"),
    ("dropout-one", ("gw", "train", "model", "transformer", "dropout"), 1.0, "dropout"),
    ("empty-flow-hidden", ("gw", "train", "model", "flow", "hidden"), [], "hidden"),
    ("amp-string", ("gw", "train", "amp"), "yes", "yes"),
    # inference
    ("zero-samples", ("gw", "inference", "n-samples"), 0, "n-samples"),
    ("unknown-phase-choice", ("gw", "inference", "phase-marginalization"), "maybe", "maybe"),
    ("negative-roll-off", ("gw", "inference", "tukey-roll-off"), -0.1, "-0.1"),
    ("event-name-dotdot", ("gw", "inference", "events"), {"..": {"trigger-time": 1.0}}, ".."),
    ("event-name-slash", ("gw", "inference", "events"), {"a/b": {"trigger-time": 1.0}}, "a/b"),
    (
        "event-named-like-injection",
        ("gw", "inference", "events"),
        {"injection-3": {}},
        "injection-",
    ),
    ("sweep-label-path", ("gw", "inference", "sweep", "settings"), [{"label": "../x"}], "../x"),
    ("sweep-labels-repeated", ("gw", "inference", "sweep", "settings"), [{"label": "a"}] * 2, "a"),
    (
        "event-missing-file",
        ("gw", "inference", "events"),
        {
            "GW1": {
                "trigger-time": 1e9,
                "data-dict": {"H1": "/nonexistent/H.hdf5", "L1": "/x.hdf5"},
            }
        },
        "/nonexistent/H.hdf5",
    ),
    # PSD
    ("psd-length-huge", ("gw", "psd", "psd-length"), 1_000_000_000, "1000000000"),
    ("psd-length-below-duration", ("gw", "psd", "psd-length"), 2, "psd-length"),
    ("overlap-one", ("gw", "psd", "overlap"), 1.0, "overlap"),
    ("unknown-window", ("gw", "psd", "window"), "kaiserish", "kaiserish"),
    ("unknown-psd-source", ("gw", "psd", "source"), "web", "web"),
    ("unknown-curve", ("gw", "psd", "simulation", "curves", "H1"), "O9-dream", "O9-dream"),
]


@pytest.mark.parametrize(
    "path, value, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_gw_setting_stops_the_cli_before_any_work(tmp_path, path, value, expected):
    out = tmp_path / "out" / "H1.h5"
    status, message = run_cli_with(
        tmp_path, path, value, ["gw", "psd", "--detector", "H1", "--out", str(out)]
    )
    assert status == 2, message
    assert len(message.strip().splitlines()) == 1, message
    assert "Traceback" not in message
    assert expected in message, message
    assert not (tmp_path / "out").exists(), "a refused run must not write anything"


def test_the_good_config_passes_the_same_checks():
    from twinflow.core.config import validate_config
    from twinflow.gw.validation import check_config

    check_config(validate_config(copy.deepcopy(GOOD_CONFIG))["gw"])
