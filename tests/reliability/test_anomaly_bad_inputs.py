"""Bad anomaly settings, fed as a user would: one wrong value in the default config, run
through a stage's CLI by hand. Each must end with exit status 2 and one line naming the key (or
its value) before any work, writing nothing."""

from __future__ import annotations

import pytest

from tests.reliability.helpers import run_cli_with

AN = ("anomaly",)
ANOMALY_CASES = [
    ("unknown-method", (*AN, "methods"), ["cathode", "magic"], "magic"),
    ("no-methods", (*AN, "methods"), [], "methods"),
    ("unknown-device", (*AN, "device"), "tpu", "tpu"),
    ("unknown-data-source", (*AN, "data", "source"), "web", "web"),
    ("negative-signal", (*AN, "data", "n-signal"), -5, "-5"),
    ("fractional-background", (*AN, "data", "n-background"), 10.5, "10.5"),
    ("test-fraction-one", (*AN, "data", "test-fraction"), 1.0, "test-fraction"),
    ("duplicate-centres", (*AN, "scan", "centres"), [3.5, 3.5], "3.5"),
    ("overlapping-regions", (*AN, "scan", "centres"), [3.5, 3.6], "centres"),
    ("no-centres", (*AN, "scan", "centres"), [], "centres"),
    ("zero-width", (*AN, "scan", "width"), 0, "width"),
    ("negative-sideband", (*AN, "scan", "sideband-width"), -0.2, "-0.2"),
    ("unknown-classifier", (*AN, "classifier", "kind"), "svm", "svm"),
    ("unknown-solver", (*AN, "sigma", "solver"), "leapfrog", "leapfrog"),
    ("w-init-one", (*AN, "ranode", "w-init"), 1.0, "w-init"),
    ("w-grid-outside", (*AN, "ranode", "w-grid"), [0.002, 1.5], "1.5"),
    ("w-grid-zero", (*AN, "ranode", "w-grid"), [0.0, 0.01], "w-grid"),
    ("flow-zero-epochs", (*AN, "flow", "epochs"), 0, "epochs"),
    ("flow-negative-learning-rate", (*AN, "flow", "learning-rate"), -1e-3, "learning-rate"),
    ("misspelt-flow-key", (*AN, "flow", "transform"), 4, "transform"),
    ("nsig-negative", (*AN, "scan-nsig", "n-signal"), [0, -300], "-300"),
    ("nsig-fractional", (*AN, "scan-nsig", "n-signal"), [0, 300.5], "300.5"),
    ("nsig-duplicate", (*AN, "scan-nsig", "n-signal"), [300, 300], "n-signal"),
    ("nsig-no-seeds", (*AN, "scan-nsig", "seeds"), [], "seeds"),
    ("nsig-region-outside", (*AN, "scan-nsig", "regions"), [7], "7"),
]


@pytest.mark.parametrize(
    "path, value, expected", [c[1:] for c in ANOMALY_CASES], ids=[c[0] for c in ANOMALY_CASES]
)
def test_bad_anomaly_setting_stops_the_cli_before_any_work(tmp_path, path, value, expected):
    out = tmp_path / "out" / "events.h5"
    status, message = run_cli_with(tmp_path, path, value, ["anomaly", "events", "--out", str(out)])
    assert status == 2, message
    assert len(message.strip().splitlines()) == 1 and "Traceback" not in message, message
    assert expected in message, message
    assert not (tmp_path / "out").exists()
