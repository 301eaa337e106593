"""Training throughput of the gw posterior model on this machine, as ratios measured in one run.

1. Training samples/s (forward, backward, AdamW step) for the CPU default model shape and for
   the production (Dingo-T1) shape, on inputs of each configuration's token count; the ratio
   default / production says how much the small default buys.
2. The share of a training step spent assembling the batch (projection, PSD draw, noise,
   whitening, tokens, masks: ``twinflow.gw.dataset.tokens.BatchAssembler``) on a real waveform dataset
   of the default configuration, against the model step it feeds. Target: under 20 %.

Usage: python benchmarks/gw_train.py [--threads 2] [--steps 10] [--waveforms 2048]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from twinflow.core.settings import load_yaml
from twinflow.gw.training.model import PosteriorModel, build_model_settings, count_parameters

REPO = Path(__file__).resolve().parents[1]


def synthetic_batch(batch_size: int, n_tokens: int, n_parameters: int, n_detectors: int) -> dict:
    g = torch.Generator().manual_seed(0)
    edges = torch.linspace(20, 1810, n_tokens + 1)
    return {
        "tokens": torch.randn(batch_size, n_tokens, 48, generator=g),
        "detector_index": (torch.arange(n_tokens) % n_detectors).expand(batch_size, -1).clone(),
        "token_frequency": torch.stack([edges[:-1], edges[1:]], -1)
        .expand(batch_size, -1, -1)
        .clone(),
        "padding_mask": torch.zeros(batch_size, n_tokens, dtype=torch.bool),
        "parameters": {f"p{i}": torch.randn(batch_size, generator=g) for i in range(n_parameters)},
    }


def make_model(arch: dict, n_parameters: int, detectors: list[str]) -> PosteriorModel:
    return PosteriorModel(
        build_model_settings(
            parameters=[f"p{i}" for i in range(n_parameters)],
            mean=[0.0] * n_parameters,
            std=[1.0] * n_parameters,
            detectors=detectors,
            frequency_scale=1810.0,
            architecture=arch,
        )
    )


def train_step_time(model, optimizer, batch, steps: int) -> float:
    """Return seconds per training step (after one warm-up step)."""

    def step():
        loss = -model(batch).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()

    step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - t0) / steps


def model_throughput(
    config: dict, n_tokens: int, batch_size: int, steps: int
) -> tuple[float, int]:
    train = config["gw"]["train"]
    n_par = len(train["parameters"]) if train.get("parameters") else 15
    model = make_model(train["model"], n_par, config["gw"]["detectors"])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    seconds = train_step_time(
        model,
        opt,
        synthetic_batch(batch_size, n_tokens, n_par, len(config["gw"]["detectors"])),
        steps,
    )
    return batch_size / seconds, count_parameters(model)


def assembly_share(config: dict, n_waveforms: int, steps: int) -> dict:
    """Time BatchAssembler against the default model's step on a freshly simulated dataset."""
    from twinflow.gw.dataset.batches import BatchAssembler
    from twinflow.gw.dataset.grid import resolve_domain
    from twinflow.gw.dataset.shards import WaveformDataset, simulate_shard, write_index
    from twinflow.gw.psd import estimate_psd_bank, load_psd_bank
    from twinflow.gw.settings import (
        batch_settings_for,
        dataset_domain_settings_for,
        dataset_shard_settings_for,
        psd_settings_for,
    )
    from twinflow.gw.training.batch_source import ShardBatchSource
    from twinflow.gw.training.stage import parameter_statistics

    gw = config["gw"]
    gw["dataset"] = {**gw["dataset"], "shard-size": n_waveforms}
    quiet = lambda *a, **k: None  # noqa: E731
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for det in gw["detectors"]:
            estimate_psd_bank(
                {**psd_settings_for(gw, det), "n-stretches": 20}, tmp / f"{det}.h5", log=quiet
            )
        resolve_domain(dataset_domain_settings_for(gw), tmp / "domain.json", log=quiet)
        simulate_shard(
            dataset_shard_settings_for(gw), tmp / "domain.json", 0, tmp / "shard-0.h5", log=quiet
        )
        write_index([tmp / "shard-0.h5"], tmp / "index.json")
        dataset = WaveformDataset(tmp / "index.json")
        banks = {d: load_psd_bank(tmp / f"{d}.h5") for d in gw["detectors"]}
        batch_settings = batch_settings_for(gw)
        assembler = BatchAssembler(
            batch_settings, dataset.domain, banks, dataset.reference_distance, dataset.parameters
        )
        train = gw["train"]
        names = train["parameters"] or assembler.parameter_names
        from twinflow.gw.prior import build_prior

        prior = build_prior({**dataset.settings["prior"], **batch_settings["prior"]})
        source = ShardBatchSource(
            dataset,
            assembler,
            parameter_names=names,
            statistics=parameter_statistics(prior, names, 0, 10_000),
            metadata={
                "detectors": gw["detectors"],
                "frequency_scale": float(gw["maximum-frequency"]),
            },
            seed=0,
            validation_fraction=0.1,
            validation_size=16,
            block_size=1024,
        )
        mean, std = source.statistics()
        model = PosteriorModel(
            build_model_settings(
                parameters=names,
                mean=mean,
                std=std,
                detectors=gw["detectors"],
                frequency_scale=float(gw["maximum-frequency"]),
                architecture=train["model"],
            )
        )
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        batches = source.epoch_batches(0, steps + 1, train["batch-size"], 0)
        t_data = t_step = 0.0
        for i in range(steps + 1):
            t0 = time.perf_counter()
            batch = next(batches)
            t1 = time.perf_counter()
            loss = -model(batch).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            t2 = time.perf_counter()
            if i:  # the first step warms up
                t_data += t1 - t0
                t_step += t2 - t1
        return {
            "tokens": assembler.n_tokens,
            "batch": train["batch-size"],
            "assembly_s": t_data / steps,
            "step_s": t_step / steps,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--waveforms", type=int, default=2048)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    default = load_yaml(REPO / "config" / "config.yaml")
    production = load_yaml(REPO / "config" / "production.yaml")

    share = assembly_share(default, args.waveforms, args.steps)
    n_default = share["tokens"]
    # Production: Dingo-T1's 69 tokens per detector (T = 8 s, nodes [20, 38, 50, 66, 82, 1810] Hz).
    n_production = 69 * len(production["gw"]["detectors"])
    rate_d, w_d = model_throughput(
        default, n_default, default["gw"]["train"]["batch-size"], args.steps
    )
    rate_p, w_p = model_throughput(production, n_production, 8, max(2, args.steps // 5))
    print(f"threads: {torch.get_num_threads()}")
    print(
        f"default model    ({w_d:>11,} weights, {n_default:3d} tokens): {rate_d:9.1f} training samples/s"
    )
    print(
        f"production model ({w_p:>11,} weights, {n_production:3d} tokens): {rate_p:9.1f} training samples/s"
    )
    print(f"ratio default / production: {rate_d / rate_p:.0f}x")
    frac = share["assembly_s"] / (share["assembly_s"] + share["step_s"])
    print(
        f"batch assembly (default, batch {share['batch']}): {1e3 * share['assembly_s']:.1f} ms vs model step "
        f"{1e3 * share['step_s']:.1f} ms -> {100 * frac:.1f} % of a training step (target < 20 %)"
    )


if __name__ == "__main__":
    main()
