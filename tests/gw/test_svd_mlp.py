"""Tests of the SVD + residual-MLP embedding (Dingo's baseline): the basis against numpy's SVD,
the projection it starts from, the token grid, zero-filling and checkpoints."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from twinflow.core.checkpoint import load_checkpoint
from twinflow.core.settings import ConfigError
from twinflow.gw.training.model import (
    CHECKPOINT_KIND,
    PosteriorModel,
    build_model_settings,
    count_parameters,
    load_posterior_model,
    save_posterior_model,
)
from twinflow.gw.training.svd_mlp import (
    ZeroFilledInputWarning,
    strain_grid,
    svd_basis,
    waveform_matrix,
)

T, D, K = 5, 2, 6  # tokens per detector, detectors, basis size
EDGES = [20.0 + 8.0 * i for i in range(T)]  # lower edges of 8-Hz tokens
ARCH = {
    "embedding": "svd-mlp",
    "tokenizer": {"hidden": 8, "blocks": 1},
    "transformer": {"d-model": 8, "layers": 1, "heads": 2, "feed-forward": 8, "dropout": 0.0},
    "svd-mlp": {
        "basis-size": K,
        "training-waveforms": 16,
        "hidden": 16,
        "blocks": 2,
        "context": 12,
        "dropout": 0.0,
    },
    "flow": {"transforms": 2, "hidden": [16], "bins": 4},
}


def make_model(seed=3):
    settings = build_model_settings(
        parameters=["chirp_mass", "mass_ratio"],
        mean=[30.0, 0.75],
        std=[5.0, 0.1],
        detectors=["H1", "L1"],
        frequency_scale=60.0,
        architecture=ARCH,
        seed=seed,
        **{"svd-token-lower-edges": EDGES},
    )
    return PosteriorModel(settings).eval()


def full_batch(b=3, seed=0):
    """Every token of both detectors, in the assembler's order (detector by detector)."""
    g = torch.Generator().manual_seed(seed)
    lower = torch.tensor(EDGES)
    freq = torch.stack([lower, lower + 8.0], -1).repeat(D, 1)  # [D*T, 2]
    return {
        "tokens": torch.randn(b, D * T, 48, generator=g),
        "detector_index": torch.arange(D).repeat_interleave(T).expand(b, -1).clone(),
        "token_frequency": freq.expand(b, -1, -1).clone(),
        "padding_mask": torch.zeros(b, D * T, dtype=torch.bool),
    }


def test_basis_matches_numpy_svd():
    rng = np.random.default_rng(1)
    # Rows with a low-rank structure plus a little noise, like whitened waveforms.
    m, n = 200, 80
    a = rng.normal(size=(m, 10)) + 1j * rng.normal(size=(m, 10))
    b = rng.normal(size=(10, n)) + 1j * rng.normal(size=(10, n))
    x = a @ b + 0.01 * (rng.normal(size=(m, n)) + 1j * rng.normal(size=(m, n)))
    v, s = svd_basis(torch.as_tensor(x), 10)
    _, s_np, vh_np = np.linalg.svd(x, full_matrices=False)
    np.testing.assert_allclose(s.numpy(), s_np, rtol=1e-10)
    # Singular vectors are defined up to a phase each: compare the projectors V V^H.
    v_np = vh_np[:10].conj().T
    np.testing.assert_allclose((v @ v.conj().T).numpy(), v_np @ v_np.conj().T, atol=1e-10)
    np.testing.assert_allclose((v.conj().T @ v).numpy(), np.eye(10), atol=1e-12)


def test_basis_larger_than_the_data_is_refused():
    with pytest.raises(ConfigError, match="basis-size"):
        svd_basis(torch.randn(4, 10, dtype=torch.complex64), 5)


def test_grid_puts_every_token_in_its_detector_and_band_slot():
    batch = full_batch(b=2)
    grid, missing = strain_grid(batch, torch.tensor(EDGES, dtype=torch.float64), D)
    assert grid.shape == (2, D, 3, T * 16)
    assert missing.tolist() == [0, 0]
    tokens = batch["tokens"]
    for d in range(D):
        for t in range(T):
            token = tokens[:, d * T + t]
            # channel-major token: Re [0:16], Im [16:32], PSD feature [32:48]
            for c in range(3):
                assert torch.equal(
                    grid[:, d, c, t * 16 : (t + 1) * 16], token[:, c * 16 : (c + 1) * 16]
                )


def test_grid_zero_fills_dropped_tokens_and_ignores_tokens_outside_the_band():
    batch = full_batch(b=1)
    keep = torch.ones(D * T, dtype=torch.bool)
    keep[T:] = False  # L1 dropped
    kept = {k: v[:, keep] for k, v in batch.items()}
    kept["token_frequency"][0, 0] = torch.tensor([500.0, 508.0])  # not a trained token
    grid, missing = strain_grid(kept, torch.tensor(EDGES, dtype=torch.float64), D)
    assert missing.tolist() == [T + 1]
    assert torch.all(grid[0, 1] == 0)  # L1 zero-filled
    assert torch.all(grid[0, 0, :, :16] == 0)  # H1's first token was moved off the band
    assert torch.equal(grid[0, 0, 0, 16:32], batch["tokens"][0, 1, :16])


def test_the_starting_projection_is_the_svd_coefficients():
    model = make_model()
    rng = np.random.default_rng(2)
    n = T * 16
    basis = np.linalg.qr(rng.normal(size=(n, K)) + 1j * rng.normal(size=(n, K)))[0]
    model.encoder.set_basis(torch.as_tensor(basis))
    batch = full_batch(b=2)
    grid, _ = strain_grid(batch, model.encoder.token_lower_edges, D)
    h = grid[:, :, 0].double().numpy() + 1j * grid[:, :, 1].double().numpy()  # [B, D, n]
    expected = np.einsum("nk,bdn->bdk", basis.conj(), h)  # c = V^H h
    coefficients = (
        torch.einsum("bdcn,dcnk->bdk", grid, model.encoder.projection).detach().double().numpy()
    )
    np.testing.assert_allclose(coefficients[..., :K], expected.real, atol=1e-4)
    np.testing.assert_allclose(coefficients[..., K:], expected.imag, atol=1e-4)


def test_waveform_matrix_refuses_masked_batches():
    batch = full_batch(b=1)
    batch["padding_mask"][0, -1] = True
    with pytest.raises(ConfigError, match="unmasked"):
        waveform_matrix([batch], torch.tensor(EDGES, dtype=torch.float64), D)


def test_missing_tokens_warn_at_inference_and_full_inputs_do_not():
    model = make_model()
    batch = full_batch(b=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.log_prob(
            batch,
            {"chirp_mass": torch.tensor([30.0, 31.0]), "mass_ratio": torch.tensor([0.7, 0.8])},
        )
    batch["padding_mask"][1, -3:] = True
    with pytest.warns(ZeroFilledInputWarning, match="zero-filled"):
        model.context(batch)


def test_one_event_without_batch_axis_samples_like_a_batch_of_one():
    model = make_model()
    batch = full_batch(b=1)
    single = {k: v[0] for k, v in batch.items()}
    torch.manual_seed(0)
    s1, lq1 = model.sample_and_log_prob(single, 50)
    torch.manual_seed(0)
    s2, lq2 = model.sample_and_log_prob(batch, 50)
    assert lq1.shape == (50,)
    torch.testing.assert_close(lq1, lq2[0])
    torch.testing.assert_close(s1["chirp_mass"], s2["chirp_mass"][0])


def test_checkpoint_keeps_the_basis_and_loads_with_weights_only(tmp_path):
    model = make_model()
    rng = np.random.default_rng(4)
    basis = np.linalg.qr(rng.normal(size=(T * 16, K)) + 1j * rng.normal(size=(T * 16, K)))[0]
    model.encoder.set_basis(torch.as_tensor(basis))
    path = tmp_path / "model.pt"
    save_posterior_model(path, model)
    payload = torch.load(path, weights_only=True)  # plain tensors and data only
    assert "encoder.basis_real" in payload["model"]
    loaded = load_posterior_model(path)
    assert (
        load_checkpoint(path, kind=CHECKPOINT_KIND)["settings"]["architecture"]["embedding"]
        == "svd-mlp"
    )
    np.testing.assert_allclose(loaded.encoder.basis_real.numpy(), basis.real, atol=1e-6)
    np.testing.assert_allclose(loaded.encoder.basis_imag.numpy(), basis.imag, atol=1e-6)
    batch = full_batch(b=2)
    params = {"chirp_mass": torch.tensor([30.0, 33.0]), "mass_ratio": torch.tensor([0.7, 0.9])}
    torch.testing.assert_close(loaded.log_prob(batch, params), model.log_prob(batch, params))
    assert count_parameters(loaded) == count_parameters(model)


def test_svd_mlp_without_its_input_grid_is_a_config_error():
    settings = build_model_settings(
        parameters=["chirp_mass"],
        mean=[30.0],
        std=[5.0],
        detectors=["H1"],
        frequency_scale=60.0,
        architecture=ARCH,
    )
    with pytest.raises(ConfigError, match="svd-token-lower-edges"):
        PosteriorModel(settings)


def test_unknown_embedding_is_a_config_error():
    settings = build_model_settings(
        parameters=["chirp_mass"],
        mean=[30.0],
        std=[5.0],
        detectors=["H1"],
        frequency_scale=60.0,
        architecture={**ARCH, "embedding": "cnn"},
    )
    with pytest.raises(ConfigError, match="model.embedding"):
        PosteriorModel(settings)
