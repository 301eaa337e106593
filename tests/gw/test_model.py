"""Tests of the posterior model: density normalisation, token masking, checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from twinflow.core.checkpoint import CheckpointError, save_checkpoint
from twinflow.core.settings import ConfigError
from twinflow.gw.training.model import (
    DEFAULT_ARCHITECTURE,
    PosteriorModel,
    build_model_settings,
    load_posterior_model,
    save_posterior_model,
)

TINY = {
    "tokenizer": {"hidden": 16, "blocks": 1},
    "transformer": {"d-model": 16, "layers": 2, "heads": 2, "feed-forward": 32, "dropout": 0.0},
    "flow": {"transforms": 3, "hidden": [32, 32], "bins": 8},
}


def make_model(
    names=("chirp_mass", "mass_ratio"), mean=(30.0, 0.75), std=(5.0, 0.1), arch=TINY, seed=3
):
    settings = build_model_settings(
        parameters=names,
        mean=mean,
        std=std,
        detectors=["H1", "L1"],
        frequency_scale=256.0,
        architecture=arch,
        seed=seed,
        analysis={"duration": 4},
    )
    return PosteriorModel(settings).eval()


def make_batch(b=3, n=10, n_dropped=(0, 3, 7), seed=0):
    g = torch.Generator().manual_seed(seed)
    mask = torch.zeros(b, n, dtype=torch.bool)
    for i, k in enumerate(n_dropped[:b]):
        if k:
            mask[i, n - k :] = True  # kept tokens compacted to the front
    edges = torch.linspace(20, 256, n + 1)
    freq = torch.stack([edges[:-1], edges[1:]], dim=-1).expand(b, n, 2).clone()
    return {
        "tokens": torch.randn(b, n, 48, generator=g),
        "detector_index": (torch.arange(n) % 2).expand(b, n).clone(),
        "token_frequency": freq,
        "padding_mask": mask,
    }


def scramble_flow(model, scale=0.1, seed=1):
    """Give the flow non-trivial weights, so its density is far from the base Gaussian."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.flow.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))


def test_density_integrates_to_one_on_a_2d_grid():
    model = make_model()
    scramble_flow(model)
    batch = make_batch(b=1, n=6, n_dropped=(0,))
    # Trapezoid-free midpoint quadrature over ±9 std around the standardisation centre.
    m = 500
    mc = torch.linspace(30 - 45, 30 + 45, m + 1)
    q = torch.linspace(0.75 - 0.9, 0.75 + 0.9, m + 1)
    mc_mid, q_mid = (mc[1:] + mc[:-1]) / 2, (q[1:] + q[:-1]) / 2
    grid_mc, grid_q = torch.meshgrid(mc_mid, q_mid, indexing="ij")
    params = {"chirp_mass": grid_mc.reshape(1, -1), "mass_ratio": grid_q.reshape(1, -1)}
    with torch.no_grad():
        log_q = model.log_prob(batch, params)[0].double()
    cell = float((mc[1] - mc[0]) * (q[1] - q[0]))
    density = log_q.exp()
    assert float(density.sum() * cell) == pytest.approx(1.0, abs=2e-3)
    # The scrambled flow must not be the base Gaussian in disguise (else the test proves little).
    z = torch.stack(
        [(grid_mc.reshape(-1) - 30) / 5, (grid_q.reshape(-1) - 0.75) / 0.1], -1
    ).double()
    gauss = torch.distributions.Normal(0, 1).log_prob(z).sum(-1) - np.log(5 * 0.1)
    assert float((density - gauss.exp()).abs().sum() * cell) > 0.1
    # Samples follow the same density: their mean matches the quadrature mean.
    samples, log_q_s = model.sample_and_log_prob(batch, 40_000)
    grid_mean = float((density * grid_mc.reshape(-1).double()).sum() * cell)
    assert float(samples["chirp_mass"].mean()) == pytest.approx(grid_mean, abs=0.15)
    # And the returned log q is the density of the returned samples.
    with torch.no_grad():
        again = model.log_prob(batch, {k: v[:, :500] for k, v in samples.items()})
    torch.testing.assert_close(again, log_q_s[:, :500], atol=1e-4, rtol=1e-5)


def test_one_event_without_batch_axis_gives_flat_samples():
    model = make_model()
    batch = {k: v[0] for k, v in make_batch(b=1, n_dropped=(0,)).items()}
    samples, log_q = model.sample_and_log_prob(batch, 7)
    assert samples["chirp_mass"].shape == (7,) and log_q.shape == (7,)


def test_masked_tokens_are_dropped_not_zero_filled():
    model = make_model()
    batch = make_batch()
    with torch.no_grad():
        ctx = model.context(batch)
        # Changing the content of dropped tokens leaves the context unchanged ...
        changed = {**batch, "tokens": batch["tokens"].clone()}
        changed["tokens"][batch["padding_mask"]] = 1e3 * torch.randn(
            int(batch["padding_mask"].sum()), 48
        )
        changed["token_frequency"] = batch["token_frequency"].clone()
        changed["token_frequency"][batch["padding_mask"]] = 4000.0
        torch.testing.assert_close(model.context(changed), ctx, atol=1e-6, rtol=1e-6)
        # ... and equals the context of the shorter, unpadded sequence of kept tokens.
        row = 2
        kept = int((~batch["padding_mask"][row]).sum())
        short = {k: v[row : row + 1, :kept] for k, v in batch.items()}
        torch.testing.assert_close(model.context(short)[0], ctx[row], atol=1e-5, rtol=1e-5)
        # Zero-filling the same tokens instead of dropping them changes the context.
        zero = {
            **batch,
            "tokens": batch["tokens"].clone(),
            "padding_mask": torch.zeros_like(batch["padding_mask"]),
        }
        zero["tokens"][batch["padding_mask"]] = 0.0
        zctx = model.context(zero)
    assert torch.equal(zctx[0], ctx[0])  # row 0 dropped nothing
    assert (zctx[1:] - ctx[1:]).abs().max() > 1e-3


def test_checkpoint_rebuilds_identical_model(tmp_path):
    model = make_model(
        names=("chirp_mass", "mass_ratio", "luminosity_distance"),
        mean=(30, 0.75, 800),
        std=(5, 0.1, 300),
    )
    scramble_flow(model, 0.1)
    path = tmp_path / "model.pt"
    save_posterior_model(path, model)
    loaded = load_posterior_model(path)
    assert loaded.settings == model.settings
    batch = make_batch()
    params = {
        "chirp_mass": torch.tensor([25.0, 30, 35]),
        "mass_ratio": torch.tensor([0.6, 0.7, 0.9]),
        "luminosity_distance": torch.tensor([500.0, 900, 1200]),
    }
    with torch.no_grad():
        torch.testing.assert_close(
            loaded.log_prob(batch, params), model.log_prob(batch, params), rtol=0, atol=0
        )
    torch.manual_seed(5)
    a, la = model.sample_and_log_prob(batch, 20)
    torch.manual_seed(5)
    b, lb = loaded.sample_and_log_prob(batch, 20)
    assert torch.equal(la, lb) and all(torch.equal(a[k], b[k]) for k in a)


def test_same_settings_build_same_initial_model_and_seed_matters():
    a, b, c = make_model(seed=3), make_model(seed=3), make_model(seed=4)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_truncated_or_foreign_checkpoints_give_clear_errors(tmp_path):
    model = make_model()
    path = tmp_path / "model.pt"
    save_posterior_model(path, model)
    data = path.read_bytes()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_posterior_model(truncated)
    foreign = tmp_path / "foreign.pt"
    save_checkpoint(foreign, kind="glitch-vae", settings={}, model={})
    with pytest.raises(CheckpointError, match="expected a 'gw-posterior-model'"):
        load_posterior_model(foreign)
    plain = tmp_path / "plain.pt"
    torch.save({"weights": torch.zeros(3)}, plain)
    with pytest.raises(CheckpointError, match="not a twinflow checkpoint"):
        load_posterior_model(plain)
    with pytest.raises(CheckpointError, match="no such file"):
        load_posterior_model(tmp_path / "missing.pt")


def test_bad_architecture_is_a_config_error_naming_the_key():
    arch = {
        **DEFAULT_ARCHITECTURE,
        "transformer": {**DEFAULT_ARCHITECTURE["transformer"], "heads": 5},
    }
    with pytest.raises(ConfigError, match="model.transformer.heads"):
        make_model(arch=arch)
    with pytest.raises(ConfigError, match="standardisation.std"):
        make_model(std=(5.0, 0.0))
