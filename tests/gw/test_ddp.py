"""Data-parallel training: 2 CPU processes, gloo backend, a tiny model.

Checks that after k optimizer steps every rank holds identical parameters (DDP averages the
gradients), that the ranks really trained on different batches (their own noise and masks),
that the averaged loss falls, and that only rank 0 wrote the checkpoint.
"""

from __future__ import annotations

import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from twinflow.core.checkpoint import load_checkpoint
from twinflow.core.seeding import derive_seed
from twinflow.gw.training.loop import STATE_KIND, fit

TINY = {
    "tokenizer": {"hidden": 16, "blocks": 1},
    "transformer": {"d-model": 16, "layers": 1, "heads": 2, "feed-forward": 32, "dropout": 0.0},
    "flow": {"transforms": 2, "hidden": [32], "bins": 8},
}
SETTINGS = {
    "seed": 5,
    "device": "cpu",
    "batch-size": 64,
    "epochs": 4,
    "steps-per-epoch": 8,
    "validation-size": 64,
    "learning-rate": 3e-3,
    "weight-decay": 0.0,
    "gradient-clip": 5.0,
    "scheduler": "cosine",
    "plateau-factor": 0.5,
    "plateau-patience": 2,
    "early-stopping-patience": 10,
    "amp": False,
    "parameters": None,
    "model": TINY,
}


class RankAwareSource:
    """θ ~ N(0, I_2), token t = A_t θ + ε; each rank draws its own batches (rank in the seed)."""

    parameter_names = ["a", "b"]

    def __init__(self, n_tokens=6, seed=0):
        self.A = torch.randn(n_tokens, 48, 2, generator=torch.Generator().manual_seed(seed)) * 0.3
        self.n_tokens, self.seed = n_tokens, seed
        self.first_batch_sums = []

    def statistics(self):
        return [0.0, 0.0], [1.0, 1.0]

    def metadata(self):
        return {"detectors": ["H1", "L1"], "frequency_scale": 256.0}

    def _make(self, n, g):
        theta = torch.randn(n, 2, generator=g)
        tokens = torch.einsum("tfp,np->ntf", self.A, theta) + torch.randn(
            n, self.n_tokens, 48, generator=g
        )
        edges = torch.linspace(20, 256, self.n_tokens + 1)
        return {
            "tokens": tokens,
            "detector_index": (torch.arange(self.n_tokens) % 2).expand(n, -1).clone(),
            "token_frequency": torch.stack([edges[:-1], edges[1:]], -1).expand(n, -1, -1).clone(),
            "padding_mask": torch.zeros(n, self.n_tokens, dtype=torch.bool),
            "parameters": {"a": theta[:, 0], "b": theta[:, 1]},
        }

    def epoch_batches(self, epoch, steps, batch_size, rank):
        for step in range(steps):
            batch = self._make(
                batch_size,
                torch.Generator().manual_seed(derive_seed(self.seed, epoch, step, rank)),
            )
            if epoch == 0 and step == 0:
                self.first_batch_sums.append(float(batch["tokens"].sum()))
            yield batch

    def validation_batches(self, batch_size, rank, world_size):
        data = self._make(64, torch.Generator().manual_seed(self.seed + 99))
        idx = torch.arange(rank, 64, world_size)
        yield {
            k: ({p: t[idx] for p, t in v.items()} if isinstance(v, dict) else v[idx])
            for k, v in data.items()
        }


def _worker(rank: int, world: int, port: int, tmp: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        source = RankAwareSource()
        result = fit(
            SETTINGS,
            source,
            state_path=os.path.join(tmp, f"state-rank{rank}.pt"),
            device=torch.device("cpu"),
            log=lambda *_: None,
        )
        # Gather every rank's final weights and first-batch fingerprint on rank 0.
        flat = torch.cat([p.detach().reshape(-1) for p in result.model.parameters()])
        gathered = [torch.zeros_like(flat) for _ in range(world)]
        dist.all_gather(gathered, flat)
        sums = [None] * world
        dist.all_gather_object(sums, source.first_batch_sums[0])
        if rank == 0:
            torch.save(
                {
                    "weights": torch.stack(gathered),
                    "first_batch_sums": torch.tensor(sums),
                    "val": torch.tensor([r["val_loss"] for r in result.history]),
                },
                os.path.join(tmp, "gathered.pt"),
            )
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_ranks_stay_identical_and_learn(tmp_path):
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    out = torch.load(tmp_path / "gathered.pt", weights_only=True)
    weights = out["weights"]
    assert torch.equal(weights[0], weights[1])  # identical parameters on both ranks
    assert out["first_batch_sums"][0] != out["first_batch_sums"][1]  # each rank its own data
    val = out["val"]
    assert val[-1] < val[0] - 0.2 and val[-1] < torch.log(torch.tensor(2 * torch.pi * torch.e))
    assert (tmp_path / "state-rank0.pt").is_file() and not (tmp_path / "state-rank1.pt").exists()
    state = load_checkpoint(tmp_path / "state-rank0.pt", kind=STATE_KIND)
    assert state["settings"]["world-size"] == 2
