"""Logit preprocessing: round trip, log-Jacobian against autograd, explicit out-of-range handling."""

import numpy as np
import pytest
import torch

from twinflow.anomaly.preprocessing import LogitScaler
from twinflow.core.settings import ConfigError


@pytest.fixture
def features():
    rng = np.random.default_rng(0)
    return np.stack(
        [rng.gamma(2.0, 0.07, 2000), rng.beta(3, 2, 2000), rng.normal(5, 2, 2000)], axis=1
    )


def test_round_trip(features):
    scaler = LogitScaler().fit(features)
    z, _ = scaler.transform(features)
    assert z.mean(0).abs().max() < 1e-6 and (z.std(0) - 1).abs().max() < 1e-6  # standardised
    np.testing.assert_allclose(scaler.inverse(z).numpy(), features, rtol=1e-9, atol=1e-12)


def test_log_jacobian_matches_autograd(features):
    scaler = LogitScaler().fit(features)
    x = torch.as_tensor(features[:20], dtype=torch.float64)
    _, log_det = scaler.transform(x)
    for i in range(len(x)):
        jac = torch.autograd.functional.jacobian(
            lambda row: scaler.transform(row[None])[0][0], x[i]
        )
        assert log_det[i].item() == pytest.approx(torch.linalg.slogdet(jac)[1].item(), rel=1e-10)


def test_density_through_preprocessing_integrates_to_one():
    # a standard normal in z, mapped back to x, must still integrate to 1 over x (1-D check)
    scaler = LogitScaler().fit(np.random.default_rng(1).uniform(2, 3, (500, 1)))
    grid = np.linspace(float(scaler.lo) + 1e-9, float(scaler.hi) - 1e-9, 200001)[:, None]
    z, log_det = scaler.transform(grid)
    density = np.exp(-0.5 * z[:, 0].numpy() ** 2) / np.sqrt(2 * np.pi) * np.exp(log_det.numpy())
    assert np.trapezoid(density, grid[:, 0]) == pytest.approx(1.0, abs=1e-3)


def test_out_of_range_is_explicit(features):
    outside = features[:3].copy()
    outside[0, 0] = features[:, 0].max() * 10
    clip = LogitScaler(out_of_range="clip").fit(features)
    z, log_det = clip.transform(outside)
    assert clip.n_clipped == 1 and torch.isfinite(z).all() and torch.isfinite(log_det).all()
    strict = LogitScaler(out_of_range="raise").fit(features)
    with pytest.raises(ConfigError, match="1 event"):
        strict.transform(outside)
    with pytest.raises(ConfigError, match="out_of_range"):
        LogitScaler(out_of_range="drop")
