"""The LHCO loader (checked by hand on the 100-event sample), the generator, and region checks."""

import math

import h5py
import numpy as np
import pytest

from twinflow.anomaly.data import (
    LHCO_COLUMNS,
    Events,
    load_events,
    prepare_events,
    read_lhco,
)
from twinflow.anomaly.regions import SignalRegion, check_region
from twinflow.anomaly.simulation import LHCOLikeGenerator
from twinflow.core.settings import ConfigError


@pytest.fixture
def lhco_file(shared_data):
    path = shared_data / "anomaly" / "lhco_rnd_100events.h5"
    if not path.is_file():
        pytest.skip(f"{path} is not present")
    return path


def _raw_rows(path):
    with h5py.File(path, "r") as f:
        names = [n.decode() for n in f["df/block0_items"][:]]
        values = f["df/block0_values"][:]
    return [dict(zip(names, row)) for row in values]


def test_lhco_loader_by_hand(lhco_file):
    events = read_lhco(lhco_file)
    rows = _raw_rows(lhco_file)
    assert len(events) == len(rows) == 100
    for i in (0, 1, 2, 57, 99):
        r = rows[i]
        e1 = math.sqrt(r["pxj1"] ** 2 + r["pyj1"] ** 2 + r["pzj1"] ** 2 + r["mj1"] ** 2)
        e2 = math.sqrt(r["pxj2"] ** 2 + r["pyj2"] ** 2 + r["pzj2"] ** 2 + r["mj2"] ** 2)
        px, py, pz = r["pxj1"] + r["pxj2"], r["pyj1"] + r["pyj2"], r["pzj1"] + r["pzj2"]
        mjj = math.sqrt((e1 + e2) ** 2 - px**2 - py**2 - pz**2) / 1000
        jets = sorted(
            [
                (r["mj1"], r["tau2j1"] / (r["tau1j1"] + 1e-5)),
                (r["mj2"], r["tau2j2"] / (r["tau1j2"] + 1e-5)),
            ]
        )
        expected = [jets[0][0] / 1000, (jets[1][0] - jets[0][0]) / 1000, jets[0][1], jets[1][1]]
        assert events.m[i] == pytest.approx(mjj, rel=1e-9)
        np.testing.assert_allclose(events.x[i], expected, rtol=1e-9)
        assert events.label[i] == r["label"]
    # event 0 has the heavier jet first (399.8 vs 123.1 GeV): the loader must have swapped them
    assert events.x[0, 0] == pytest.approx(0.123076, rel=1e-5)
    assert events.x[0, 1] == pytest.approx(0.399821 - 0.123076, rel=1e-4)
    assert np.all(events.x[:, 1] >= 0)
    assert 1.5 < np.median(events.m) < 4.5  # dijet masses of a few TeV


def test_lhco_missing_column(tmp_path, lhco_file):
    bad = tmp_path / "bad.h5"
    with h5py.File(lhco_file, "r") as src, h5py.File(bad, "w") as dst:
        names = [n for n in src["df/block0_items"][:] if n != b"tau2j2"]
        keep = [i for i, n in enumerate(src["df/block0_items"][:]) if n != b"tau2j2"]
        g = dst.create_group("df")
        g.attrs["nblocks"] = 1
        g.create_dataset("block0_items", data=np.array(names))
        g.create_dataset("block0_values", data=src["df/block0_values"][:][:, keep])
    with pytest.raises(ConfigError, match="tau2j2"):
        read_lhco(bad)
    with pytest.raises(ConfigError, match="no such file"):
        read_lhco(tmp_path / "absent.h5")
    assert set(LHCO_COLUMNS) - {n.decode() for n in names} == {"tau2j2"}


def test_background_log_prob_has_the_analytic_entropy():
    """-E[log p_B(x | m)] of the generator's own background must equal the sum of the
    marginals' differential entropies (scipy; + log s for each jet mass scaled by s) minus the
    Gaussian copula's mutual information, -1/2 log det R: an analytic reference that a wrong
    copula term, a missing Jacobian or a swapped marginal all miss by far more than the
    Monte Carlo error."""
    from scipy import stats

    def gamma(mean, sd):
        return stats.gamma((mean / sd) ** 2, scale=sd**2 / mean)

    def beta(mean, sd):
        k = mean * (1 - mean) / sd**2 - 1
        return stats.beta(mean * k, (1 - mean) * k)

    bkg = LHCOLikeGenerator().background(200_000, np.random.default_rng(11))
    log_p = LHCOLikeGenerator.background_log_prob(bkg.x, bkg.m)
    assert np.all(np.isfinite(log_p))
    entropies = sum(d.entropy() for d in (gamma(0.14, 0.10), gamma(0.17, 0.15)))
    entropies += sum(d.entropy() for d in (beta(0.58, 0.18), beta(0.48, 0.19)))
    jacobian = 2 * 0.3 * np.mean(np.log(bkg.m / 3.5))  # two jet masses scaled by (m/3.5)^0.3
    corr = np.array(
        [
            [1, 0.15, -0.33, -0.05],
            [0.15, 1, -0.05, -0.44],
            [-0.33, -0.05, 1, 0.15],
            [-0.05, -0.44, 0.15, 1],
        ]
    )
    expected = entropies + jacobian + 0.5 * np.log(np.linalg.det(corr))
    standard_error = log_p.std() / np.sqrt(len(log_p))
    assert -log_p.mean() == pytest.approx(expected, abs=4 * standard_error)
    # without the copula (independent features) the entropy would be higher by the mutual
    # information, 0.17 nats: many standard errors, so the check sees the copula term
    assert -0.5 * np.log(np.linalg.det(corr)) > 20 * standard_error
    # the copula's quadratic form averages to zero, so the entropy cannot see its sign: check
    # event by event against scipy's multivariate normal, c(u) = phi_R(z) / prod phi(z_i)
    x, m = bkg.x[:2000], bkg.m[:2000]
    s = (m / 3.5) ** 0.3
    marginals = [(gamma(0.14, 0.10), s), (gamma(0.17, 0.15), s)]
    marginals += [(beta(0.58, 0.18), 1.0), (beta(0.48, 0.19), 1.0)]
    z = np.stack([stats.norm.ppf(d.cdf(x[:, i] / k)) for i, (d, k) in enumerate(marginals)], 1)
    reference = sum(d.logpdf(x[:, i] / k) - np.log(k) for i, (d, k) in enumerate(marginals))
    reference += stats.multivariate_normal(cov=corr).logpdf(z) - stats.norm.logpdf(z).sum(1)
    np.testing.assert_allclose(log_p[:2000], reference, rtol=1e-7, atol=1e-7)


def test_generator_matches_the_stated_lhco_facts():
    gen = LHCOLikeGenerator()
    rng = np.random.default_rng(5)
    bkg, sig = gen.background(300_000, rng), gen.signal(20_000, rng)
    window = (bkg.m > 3.3) & (bkg.m < 3.7)
    assert window.mean() == pytest.approx(0.12, abs=0.01)
    # d ln N / dm at 3.5 TeV from counts in two neighbouring bins
    lo, hi = ((bkg.m > 3.3) & (bkg.m < 3.5)).sum(), ((bkg.m > 3.5) & (bkg.m < 3.7)).sum()
    assert np.log(hi / lo) / 0.2 == pytest.approx(-1.5, abs=0.2)
    x = bkg.x[window]
    np.testing.assert_allclose(x.mean(0), [0.14, 0.17, 0.58, 0.48], atol=0.01)
    np.testing.assert_allclose(x.std(0), [0.10, 0.15, 0.18, 0.19], atol=0.01)
    corr = np.corrcoef(x.T)
    assert corr[0, 2] == pytest.approx(-0.3, abs=0.05) and corr[1, 3] == pytest.approx(
        -0.4, abs=0.05
    )
    assert np.median(bkg.x[bkg.m > 4.0, 0]) > np.median(bkg.x[(bkg.m > 2.8) & (bkg.m < 3.2), 0])
    swin = (sig.m > 3.3) & (sig.m < 3.7)
    # 1000 signal on 1M background: S/B about 0.6% in the window
    assert 1000 * swin.mean() / (1e6 * window.mean()) == pytest.approx(0.006, abs=0.001)
    both_peaks = (np.abs(sig.x[:, 0] - 0.1) < 0.03) & (
        np.abs(sig.x[:, 0] + sig.x[:, 1] - 0.5) < 0.1
    )
    assert both_peaks.mean() == pytest.approx(0.7, abs=0.05)
    np.testing.assert_allclose(sig.x[both_peaks, 2:].mean(0), [0.37, 0.21], atol=0.02)


def test_prepare_events_injects_and_reproduces(tmp_path):
    settings = {
        "seed": 3,
        "data": {
            "source": "simulated",
            "n-background": 5000,
            "n-signal": 37,
            "n-extra-background": 4000,
            "n-train-signal": 100,
            "n-test-background": 300,
            "n-test-signal": 50,
            "test-fraction": 0.2,
            "files": {},
        },
    }
    prepare_events(settings, tmp_path / "a.h5")
    prepare_events(settings, tmp_path / "b.h5")
    a, stored = load_events(tmp_path / "a.h5")
    b, _ = load_events(tmp_path / "b.h5")
    assert stored == settings
    assert a["data"].label.sum() == 37 and len(a["data"]) == 5037
    assert a["extra_background"].label.sum() == 0 and len(a["test"]) == 350
    np.testing.assert_array_equal(a["data"].x, b["data"].x)
    bad = {**settings, "data": {**settings["data"], "n-signal": -1}}
    with pytest.raises(ConfigError, match="n-signal"):
        prepare_events(bad, tmp_path / "c.h5")
    assert not (tmp_path / "c.h5").exists()


def test_region_checks():
    rng = np.random.default_rng(0)
    data = Events(rng.uniform(2.6, 5.0, 20000), rng.random((20000, 4)), np.zeros(20000, np.int8))
    check_region(SignalRegion(0, 3.3, 3.7, 0.2), data, 1000)
    with pytest.raises(ConfigError, match="outside the data's m_JJ range"):
        check_region(SignalRegion(0, 4.8, 5.2, 0.2), data, 10)
    with pytest.raises(ConfigError, match="min-sideband-events"):
        check_region(SignalRegion(0, 3.3, 3.7, 0.01), data, 1000)
