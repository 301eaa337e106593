"""Tests of the training loop on a synthetic linear-Gaussian problem (independent of the
dataset stage): the loss falls towards the analytic posterior entropy, runs are deterministic,
and a run killed with SIGKILL resumes to exactly the weights of an uninterrupted run."""

from __future__ import annotations

import copy
import multiprocessing
import os
import signal

import numpy as np
import pytest
import torch

from twinflow.core.checkpoint import load_checkpoint
from twinflow.core.seeding import derive_seed
from twinflow.core.settings import ConfigError
from twinflow.gw.training.loop import STATE_KIND, fit, write_training_outputs
from twinflow.gw.training.model import load_posterior_model
from twinflow.gw.training.stage import check_train_settings

TINY = {
    "tokenizer": {"hidden": 16, "blocks": 1},
    "transformer": {"d-model": 16, "layers": 1, "heads": 2, "feed-forward": 32, "dropout": 0.1},
    "flow": {"transforms": 2, "hidden": [32], "bins": 8},
}

SETTINGS = {
    "seed": 11,
    "device": "cpu",
    "batch-size": 32,
    "epochs": 3,
    "steps-per-epoch": 6,
    "validation-size": 64,
    "learning-rate": 3e-3,
    "weight-decay": 1e-4,
    "gradient-clip": 5.0,
    "scheduler": "cosine",
    "plateau-factor": 0.5,
    "plateau-patience": 2,
    "early-stopping-patience": 5,
    "amp": True,
    "parameters": None,
    "model": TINY,
}


class LinearGaussianSource:
    """θ ~ N(0, I_2); token t holds A_t θ + σ ε (48 features), tokens randomly dropped.

    The posterior is Gaussian with covariance (I + AᵀA/σ²)⁻¹, so the best achievable NLL is
    known: E[-log p(θ|d)] = ½ log det(2πe Σ_post) when every token is kept.
    """

    parameter_names = ["a", "b"]

    def __init__(self, n_tokens=8, sigma=1.0, seed=0, validation_size=64, kill_at=None, drop=True):
        g = torch.Generator().manual_seed(seed)
        self.A = torch.randn(n_tokens, 48, 2, generator=g) * 0.3
        self.sigma, self.seed, self.n_tokens, self.drop = sigma, seed, n_tokens, drop
        self.validation = self._make(validation_size, torch.Generator().manual_seed(seed + 1))
        self.kill_at = kill_at

    def statistics(self):
        return [0.0, 0.0], [1.0, 1.0]

    def metadata(self):
        return {"detectors": ["H1", "L1"], "frequency_scale": 256.0}

    def _make(self, n, g):
        theta = torch.randn(n, 2, generator=g)
        tokens = torch.einsum("tfp,np->ntf", self.A, theta) + self.sigma * torch.randn(
            n, self.n_tokens, 48, generator=g
        )
        mask = torch.zeros(n, self.n_tokens, dtype=torch.bool)
        if self.drop:  # drop the last k tokens of each row (kept ones stay at the front)
            k = torch.randint(0, self.n_tokens // 2, (n,), generator=g)
            mask = torch.arange(self.n_tokens)[None, :] >= (self.n_tokens - k)[:, None]
        edges = torch.linspace(20, 256, self.n_tokens + 1)
        return {
            "tokens": tokens,
            "detector_index": (torch.arange(self.n_tokens) % 2).expand(n, -1).clone(),
            "token_frequency": torch.stack([edges[:-1], edges[1:]], -1).expand(n, -1, -1).clone(),
            "padding_mask": mask,
            "parameters": {"a": theta[:, 0], "b": theta[:, 1]},
        }

    def epoch_batches(self, epoch, steps, batch_size, rank):
        for step in range(steps):
            if self.kill_at == (epoch, step):
                os.kill(os.getpid(), signal.SIGKILL)
            yield self._make(
                batch_size,
                torch.Generator().manual_seed(derive_seed(self.seed, epoch, step, rank)),
            )

    def validation_batches(self, batch_size, rank, world_size):
        n = len(self.validation["tokens"])
        idx = torch.arange(rank, n, world_size)
        for start in range(0, len(idx), batch_size):
            i = idx[start : start + batch_size]
            yield {
                k: ({p: t[i] for p, t in v.items()} if isinstance(v, dict) else v[i])
                for k, v in self.validation.items()
            }

    def optimal_nll(self):
        a = self.A.reshape(-1, 2).double()
        cov = torch.linalg.inv(torch.eye(2, dtype=torch.float64) + a.T @ a / self.sigma**2)
        return 0.5 * float(torch.logdet(2 * np.pi * np.e * cov))


def _states_equal(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


def test_loss_falls_towards_the_analytic_optimum(tmp_path):
    torch.set_num_threads(1)
    source = LinearGaussianSource(drop=False)
    settings = {
        **SETTINGS,
        "epochs": 8,
        "steps-per-epoch": 15,
        "model": {**TINY, "transformer": {**TINY["transformer"], "dropout": 0.0}},
    }
    result = fit(
        settings, source, state_path=None, device=torch.device("cpu"), log=lambda *_: None
    )
    val = [r["val_loss"] for r in result.history]
    prior_nll = np.log(2 * np.pi * np.e)  # entropy of N(0, I_2): a model that ignores the data
    assert val[0] < prior_nll
    assert val[-1] < val[0] - 0.3
    # Never below the analytic optimum (minus Monte Carlo scatter over 64 validation draws).
    assert min(val) > source.optimal_nll() - 0.35
    write_training_outputs(
        result,
        model_path=tmp_path / "m.pt",
        metrics_path=tmp_path / "m.csv",
        plot_path=tmp_path / "loss.png",
    )
    model = load_posterior_model(tmp_path / "m.pt")
    batch = next(source.validation_batches(64, 0, 1))
    with torch.no_grad():
        assert float(-model(batch).mean()) == pytest.approx(min(val), abs=1e-4)
    assert (tmp_path / "m.csv").read_text().splitlines()[0].startswith("epoch,train_loss,val_loss")


def _killed_run(state_path):
    torch.set_num_threads(1)
    fit(
        SETTINGS,
        LinearGaussianSource(kill_at=(1, 2)),
        state_path=state_path,
        device=torch.device("cpu"),
        log=lambda *_: None,
    )


def test_sigkill_then_resume_ends_equal_to_an_uninterrupted_run(tmp_path):
    torch.set_num_threads(1)
    cpu = torch.device("cpu")
    reference = fit(
        SETTINGS,
        LinearGaussianSource(),
        state_path=tmp_path / "ref.pt",
        device=cpu,
        log=lambda *_: None,
    )
    # Deterministic: a second uninterrupted run gives the same weights.
    again = fit(SETTINGS, LinearGaussianSource(), state_path=None, device=cpu, log=lambda *_: None)
    assert _states_equal(reference.model.state_dict(), again.model.state_dict())

    state = tmp_path / "state.pt"
    proc = multiprocessing.get_context("spawn").Process(target=_killed_run, args=(state,))
    proc.start()
    proc.join(120)
    assert proc.exitcode == -signal.SIGKILL
    saved = load_checkpoint(state, kind=STATE_KIND)
    assert saved["epoch"] == 0  # epoch 0 finished, the kill came during epoch 1

    messages = []
    resumed = fit(
        SETTINGS, LinearGaussianSource(), state_path=state, device=cpu, log=messages.append
    )
    assert resumed.resumed_from_epoch == 1 and any("resuming after epoch 1" in m for m in messages)
    assert _states_equal(resumed.model.state_dict(), reference.model.state_dict())
    final = load_checkpoint(state, kind=STATE_KIND)
    ref_final = load_checkpoint(tmp_path / "ref.pt", kind=STATE_KIND)
    assert _states_equal(final["model"], ref_final["model"])
    assert [r["val_loss"] for r in final["history"]] == [
        r["val_loss"] for r in ref_final["history"]
    ]


def test_changed_settings_do_not_resume_a_stale_state(tmp_path):
    torch.set_num_threads(1)
    cpu = torch.device("cpu")
    short = {**SETTINGS, "epochs": 1, "steps-per-epoch": 2}
    fit(
        short,
        LinearGaussianSource(),
        state_path=tmp_path / "s.pt",
        device=cpu,
        log=lambda *_: None,
    )
    messages = []
    other = {**short, "learning-rate": 1e-3}
    result = fit(
        other,
        LinearGaussianSource(),
        state_path=tmp_path / "s.pt",
        device=cpu,
        log=messages.append,
    )
    assert result.resumed_from_epoch == 0 and any("other settings" in m for m in messages)
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    messages = []
    fit(
        short,
        LinearGaussianSource(),
        state_path=tmp_path / "bad.pt",
        device=cpu,
        log=messages.append,
    )
    assert any("not resuming" in m for m in messages)


@pytest.mark.parametrize(
    "key, value",
    [
        ("batch-size", 1),
        ("scheduler", "step"),
        ("learning-rate", -1),
        ("amp", "yes"),
        ("parameters", []),
        ("epochs", 0),
    ],
)
def test_bad_train_settings_raise_config_error_naming_the_key(key, value):
    settings = copy.deepcopy(SETTINGS)
    settings[key] = value
    with pytest.raises(ConfigError, match=key):
        check_train_settings(settings)


class OneDetectorSource(LinearGaussianSource):
    """The linear-Gaussian problem on one detector's fixed tokens, for the svd-mlp embedding."""

    def __init__(self, **kwargs):
        super().__init__(drop=False, **kwargs)

    def metadata(self):
        edges = torch.linspace(20, 256, self.n_tokens + 1)
        return {
            "detectors": ["H1"],
            "frequency_scale": 256.0,
            "svd-token-lower-edges": edges[:-1].tolist(),
        }

    def _make(self, n, g):
        batch = super()._make(n, g)
        batch["detector_index"] = torch.zeros_like(batch["detector_index"])
        return batch

    def noise_free_batches(self, n, batch_size=512):
        sigma, self.sigma = self.sigma, 0.0
        try:
            yield self._make(n, torch.Generator().manual_seed(99))
        finally:
            self.sigma = sigma


def test_svd_mlp_embedding_learns_the_linear_gaussian_posterior():
    torch.set_num_threads(1)
    source = OneDetectorSource()
    svd = {"basis-size": 8, "training-waveforms": 256, "hidden": 32, "blocks": 2, "context": 16}
    settings = {
        **SETTINGS,
        "epochs": 8,
        "steps-per-epoch": 15,
        "model": {**TINY, "embedding": "svd-mlp", "svd-mlp": {**svd, "dropout": 0.0}},
    }
    logs = []
    result = fit(settings, source, state_path=None, device=torch.device("cpu"), log=logs.append)
    # The signal A θ spans 2 complex directions per bin pair: 8 vectors keep all of it.
    assert any("keeps 100.000% of their power" in line for line in logs)
    val = [r["val_loss"] for r in result.history]
    prior_nll = np.log(2 * np.pi * np.e)
    assert val[-1] < prior_nll - 1.0
    assert min(val) > source.optimal_nll() - 0.35
    assert result.model.embedding == "svd-mlp"


def test_time_budget_stops_training_at_the_first_step_past_it():
    torch.set_num_threads(1)
    source = LinearGaussianSource()
    settings = {**SETTINGS, "epochs": 50, "steps-per-epoch": 10, "time-budget": 1e-9}
    result = fit(
        settings, source, state_path=None, device=torch.device("cpu"), log=lambda *_: None
    )
    # The budget is spent before the first step: one epoch, no steps, then the stop.
    assert len(result.history) == 1 and result.history[0]["steps"] == 0
    assert result.stopped_early
    full = fit(
        {**SETTINGS, "epochs": 1},
        source,
        state_path=None,
        device=torch.device("cpu"),
        log=lambda *_: None,
    )
    assert full.history[0]["steps"] == SETTINGS["steps-per-epoch"]
