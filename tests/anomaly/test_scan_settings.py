"""Bad scan settings stop with one ConfigError naming key and value; the scan's bookkeeping."""

import pytest

from twinflow.anomaly.gather import nsig_goals
from twinflow.anomaly.settings import check_config, check_nsig_scan, nsig_results, with_defaults
from twinflow.core.settings import ConfigError


def _section(**changes):
    section = with_defaults({})
    for path, value in changes.items():
        node = section
        *keys, last = path.split("/")
        for key in keys:
            node = node[key]
        node[last] = value
    return section


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("scan/centres", [3.1, 3.5, 3.5], "anomaly.scan.centres.*appears twice"),
        ("scan/centres", [3.1, 3.4], "anomaly.scan.centres.*overlap"),
        ("ranode/w-grid", [0.01, 1.0], "anomaly.ranode.w-grid"),
        ("ranode/w-grid", [0.0], "anomaly.ranode.w-grid"),
    ],
)
def test_bad_scan_settings(path, value, message):
    with pytest.raises(ConfigError, match=message):
        check_config(_section(**{path: value}))


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([0, -300], "anomaly.scan-nsig.n-signal = -300"),
        ([0, 300.5], "anomaly.scan-nsig.n-signal = 300.5"),
        ([300, 300], "duplicates"),
    ],
)
def test_bad_injection_counts(value, message):
    with pytest.raises(ConfigError, match=message):
        check_nsig_scan(_section(**{"scan-nsig/n-signal": value}))


def test_more_signal_than_available():
    section = _section(**{"scan-nsig/n-signal": [0, 3000]})
    check_nsig_scan(section, available_signal=None)
    with pytest.raises(ConfigError, match="n-signal = 3000.*at most 2000"):
        check_nsig_scan(section, available_signal=2000)


def test_one_job_per_point():
    section = _section(**{"scan-nsig/regions": [1]})
    paths = nsig_results("r", section)
    scan = section["scan-nsig"]
    assert (
        len(paths)
        == len(set(paths))
        == len(scan["n-signal"]) * len(scan["seeds"]) * len(scan["methods"])
    )
    assert "r/nsig/n750/seed3/sr1/ranode.h5" in paths


def test_goals_from_a_table():
    rows = [
        {
            "n_signal": 1000,
            "seed": s,
            "region": "sr1",
            "method": "ranode",
            "true_w": 0.006,
            "learned_w": lw,
            "learned_w_error": 0.001,
            "max_sic": 1.0,
            "excess_significance": 0.0,
        }
        for s, lw in [(1, 0.0065), (2, 0.0069), (3, 0.0095)]
    ] + [
        {
            "n_signal": 0,
            "seed": s,
            "region": "sr1",
            "method": "cwola",
            "max_sic": 1.0,
            "excess_significance": z,
        }
        for s, z in [(1, 3.5), (2, 0.1), (3, 4.0)]
    ]
    goals = nsig_goals(rows, threshold=3)
    assert goals["ranode_w_within_30_percent"]["value"] == pytest.approx(2 / 3)
    assert not goals["ranode_w_within_30_percent"]["met"]
    assert goals["ranode_w_truth_inside_error"]["value"] == pytest.approx(2 / 3)
    assert goals["no_false_discoveries"]["seeds_above_threshold"] == {"sr1/cwola": [1, 3]}
    assert not goals["no_false_discoveries"]["met"]
