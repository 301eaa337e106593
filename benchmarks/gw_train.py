"""Training throughput of the gw posterior model on this machine, as ratios measured in one run.

1. Training samples/s (forward, backward, AdamW step) for the CPU default model shape and for
   the production (Dingo-T1) shape, on inputs of each configuration's token count; the ratio
   default / production says how much the small default buys.
2. The share of a training step spent assembling the batch (projection, PSD draw, noise,
   whitening, tokens, masks: ``twinflow.gw.dataset.tokens.BatchAssembler``) on a real waveform dataset
   of the default configuration, against the model step it feeds. Target: under 20 %.

3. ``--sweep``: for both embeddings (transformer, svd-mlp) on the default configuration's
   data, samples/s and the share of a step in data assembly, forward, backward and optimizer
   for batch sizes 64-1024 and 1-2 threads; at the default batch size also bfloat16 autocast,
   each SDPA backend (transformer) and torch.compile of the embedding; and the FLOPs per
   training sample against the machine's measured matmul FLOP/s (the compute floor).

4. ``--processes CORES``: the training stage itself (``twinflow gw train``) on CORES cores, as
   one process of CORES threads and as CORES data-parallel ranks of one thread (torchrun, gloo).

Usage: python benchmarks/gw_train.py [--threads 2] [--steps 10] [--waveforms 2048]
       python benchmarks/gw_train.py --sweep [--steps 3] [--json rows.json]
       python benchmarks/gw_train.py --processes 2 [--steps 60]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import subprocess
import sys
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
    train = config["gw"]["train"]
    with default_source(config, n_waveforms, "transformer") as (source, settings):
        model = PosteriorModel(settings)
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
            "tokens": source.assembler.n_tokens,
            "batch": train["batch-size"],
            "assembly_s": t_data / steps,
            "step_s": t_step / steps,
        }


# --------------------------------------------------------------------------------------------
# --sweep: where a training step's time goes, across batch sizes, threads and CPU options


def write_default_dataset(gw: dict, n_waveforms: int, directory: Path) -> None:
    """Write PSD banks (20 stretches), the domain, one shard of ``n_waveforms`` and index.json."""
    from twinflow.gw.dataset.grid import resolve_domain
    from twinflow.gw.dataset.shards import simulate_shard, write_index
    from twinflow.gw.psd import estimate_psd_bank
    from twinflow.gw.settings import (
        dataset_domain_settings_for,
        dataset_shard_settings_for,
        psd_settings_for,
    )

    gw = {**gw, "dataset": {**gw["dataset"], "shard-size": n_waveforms}}
    quiet = lambda *a, **k: None  # noqa: E731
    for det in gw["detectors"]:
        estimate_psd_bank(
            {**psd_settings_for(gw, det), "n-stretches": 20}, directory / f"{det}.h5", log=quiet
        )
    resolve_domain(dataset_domain_settings_for(gw), directory / "domain.json", log=quiet)
    simulate_shard(
        dataset_shard_settings_for(gw),
        directory / "domain.json",
        0,
        directory / "shard-0.h5",
        log=quiet,
    )
    write_index([directory / "shard-0.h5"], directory / "index.json")


@contextlib.contextmanager
def default_source(config: dict, n_waveforms: int, embedding: str):
    """Yield (ShardBatchSource, model settings) on a freshly simulated default-config dataset."""
    from twinflow.gw.dataset.batches import BatchAssembler
    from twinflow.gw.dataset.shards import WaveformDataset
    from twinflow.gw.prior import build_prior
    from twinflow.gw.psd import load_psd_bank
    from twinflow.gw.settings import batch_settings_for
    from twinflow.gw.training.batch_source import ShardBatchSource
    from twinflow.gw.training.stage import parameter_statistics

    gw = copy.deepcopy(config["gw"])
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_default_dataset(gw, n_waveforms, tmp)
        dataset = WaveformDataset(tmp / "index.json")
        banks = {d: load_psd_bank(tmp / f"{d}.h5") for d in gw["detectors"]}
        batch_settings = batch_settings_for(gw)
        assembler = BatchAssembler(
            batch_settings, dataset.domain, banks, dataset.reference_distance, dataset.parameters
        )
        train = gw["train"]
        names = train["parameters"] or assembler.parameter_names
        prior = build_prior({**dataset.settings["prior"], **batch_settings["prior"]})
        mean, std = parameter_statistics(prior, names, 0, 10_000)
        edges = [
            float(lo)
            for lo, hi in dataset.domain.token_edges
            if lo >= assembler.f_min - 1e-9 and hi <= assembler.f_max + 1e-9
        ]
        metadata = {
            "detectors": gw["detectors"],
            "frequency_scale": float(gw["maximum-frequency"]),
            "svd-token-lower-edges": edges,
        }
        source = ShardBatchSource(
            dataset,
            assembler,
            parameter_names=names,
            statistics=(mean, std),
            metadata=metadata,
            seed=0,
            validation_fraction=0.1,
            validation_size=16,
            block_size=1024,
            masks=embedding == "transformer",
        )
        arch = {**train["model"], "embedding": embedding}
        arch.setdefault("svd-mlp", dict(SVD_MLP_DEFAULT))
        settings = build_model_settings(
            parameters=names, mean=mean, std=std, architecture=arch, seed=0, **metadata
        )
        yield source, settings


#: gw.train.model.svd-mlp's schema defaults (the default config does not spell them out).
SVD_MLP_DEFAULT = {
    "basis-size": 64,
    "training-waveforms": 2000,
    "hidden": 256,
    "blocks": 4,
    "context": 64,
    "dropout": 0.0,
}


def profile_steps(
    model,
    batches,
    steps: int,
    *,
    bf16: bool = False,
    sdpa: str | None = None,
) -> dict:
    """Return seconds per step in data assembly, forward, backward and optimizer (after a warm-up).

    ``bf16``: bfloat16 autocast on the CPU (the flow stays float32 inside the model);
    ``sdpa``: force one scaled-dot-product-attention backend (math, flash, efficient).
    """
    from torch.nn.attention import SDPBackend, sdpa_kernel

    backends = {
        "math": SDPBackend.MATH,
        "flash": SDPBackend.FLASH_ATTENTION,
        "efficient": SDPBackend.EFFICIENT_ATTENTION,
    }
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    times = {"data": 0.0, "forward": 0.0, "backward": 0.0, "optimizer": 0.0}
    kernel = sdpa_kernel([backends[sdpa]]) if sdpa else contextlib.nullcontext()
    cpu0 = 0.0
    with kernel:
        for i in range(steps + 1):
            if i == 1:  # the first step warms up (allocations, compilation)
                times = dict.fromkeys(times, 0.0)
                cpu0 = time.process_time()
            t0 = time.perf_counter()
            batch = next(batches)
            t1 = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = -model(batch).mean()
            t2 = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            t3 = time.perf_counter()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            t4 = time.perf_counter()
            for key, dt in zip(times, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                times[key] += dt
    out = {k: v / steps for k, v in times.items()}
    out["cpu_per_step"] = (time.process_time() - cpu0) / steps
    return out


def flops_per_sample(model, batch) -> float:
    """Return the forward + backward FLOPs per sample of one training step (torch's counter)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        (-model(batch).mean()).backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / len(batch["tokens"])


def machine_flops(threads: int, n: int = 1024, repeats: int = 5) -> float:
    """Return the float32 matrix-multiply FLOP/s this process gets with ``threads`` threads."""
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    t0 = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - t0)


def _row(label: str, batch: int, threads: int, prof: dict) -> dict:
    step = sum(prof[k] for k in ("data", "forward", "backward", "optimizer"))
    return {
        "case": label,
        "batch": batch,
        "threads": threads,
        "samples_per_s": batch / step,
        **{f"{k}_share": prof[k] / step for k in ("data", "forward", "backward", "optimizer")},
        "cpu_ms_per_sample": 1e3 * prof["cpu_per_step"] / batch,
    }


def sweep(config: dict, n_waveforms: int, steps: int, batch_sizes, thread_counts, options: bool):
    """Print the throughput tables of both embeddings (Markdown) and return the rows."""
    rows = []
    for embedding in ("transformer", "svd-mlp"):
        with default_source(config, n_waveforms, embedding) as (source, settings):
            model = PosteriorModel(settings)
            if embedding == "svd-mlp":
                from twinflow.gw.training.loop import fit_svd_basis

                fit_svd_basis(
                    model, source, settings["architecture"]["svd-mlp"], log=lambda *_: None
                )
            model.train()
            for threads in thread_counts:
                torch.set_num_threads(threads)
                for b in batch_sizes:
                    prof = profile_steps(model, source.epoch_batches(0, steps + 1, b, 0), steps)
                    rows.append(_row(embedding, b, threads, prof))
                    print(_markdown_row(rows[-1]), flush=True)
            if not options:
                continue
            b, threads = config["gw"]["train"]["batch-size"], max(thread_counts)
            torch.set_num_threads(threads)
            batches = lambda: source.epoch_batches(0, steps + 1, b, 0)  # noqa: E731
            variants = [("bf16 autocast", {"bf16": True})]
            if embedding == "transformer":
                variants += [(f"sdpa {k}", {"sdpa": k}) for k in ("math", "flash", "efficient")]
            for label, kwargs in variants:
                try:
                    prof = profile_steps(model, batches(), steps, **kwargs)
                except RuntimeError as err:  # a backend that does not take these inputs
                    print(
                        f"| {embedding} {label} | {b} | {threads} | not available: {str(err)[:80]} |"
                    )
                    continue
                rows.append(_row(f"{embedding} {label}", b, threads, prof))
                print(_markdown_row(rows[-1]), flush=True)
            compiled = copy.deepcopy(model)
            compiled.encoder = torch.compile(compiled.encoder)
            t0 = time.perf_counter()
            try:
                prof = profile_steps(compiled, batches(), steps)
            except Exception as err:  # noqa: BLE001 - report any compiler failure as a result
                print(f"| {embedding} torch.compile | {b} | {threads} | failed: {str(err)[:80]} |")
            else:
                rows.append(_row(f"{embedding} torch.compile (encoder)", b, threads, prof))
                rows[-1]["compile_and_run_s"] = time.perf_counter() - t0
                print(_markdown_row(rows[-1]), flush=True)
            batch = next(source.epoch_batches(0, 1, b, 0))
            flops = flops_per_sample(model, batch)
            for threads in thread_counts:
                peak = machine_flops(threads)
                print(
                    f"{embedding}: {flops / 1e6:.1f} MFLOP per training sample (forward + "
                    f"backward); matmul peak with {threads} thread(s) {peak / 1e9:.1f} GFLOP/s -> "
                    f"at most {peak / flops:.0f} samples/s"
                )
                rows.append(
                    {
                        "case": f"{embedding} FLOP bound",
                        "threads": threads,
                        "mflop_per_sample": flops / 1e6,
                        "gflops": peak / 1e9,
                        "bound_samples_per_s": peak / flops,
                    }
                )
    return rows


# --------------------------------------------------------------------------------------------
# --processes: the training stage itself, one process against data-parallel CPU ranks


def processes_comparison(config: dict, n_waveforms: int, steps: int, cores: int) -> list[dict]:
    """Time ``twinflow gw train`` on the default model: one process of ``cores`` threads, then
    ``cores`` torchrun ranks of one thread each (DDP over gloo, the global batch split).

    Both run the real stage (batch assembly, AdamW, gradient clipping; the ranks also
    all-reduce their gradients) for ``steps`` optimizer steps of the default batch size in one
    epoch; samples/s is the stage's own figure (the optimizer steps with batch assembly, not
    validation), summed over ranks.
    """
    from twinflow.gw.settings import train_settings_for

    gw = copy.deepcopy(config["gw"])
    gw["train"] = {**gw["train"], "epochs": 1, "steps-per-epoch": steps, "validation-size": 256}
    settings = json.dumps(train_settings_for(gw))
    bin_dir = Path(sys.executable).parent
    launchers = {
        f"1 process x {cores} threads": [],
        f"{cores} ranks x 1 thread (DDP, gloo)": [
            str(bin_dir / "torchrun"),
            "--standalone",
            f"--nproc_per_node={cores}",
            "--no-python",
        ],
    }
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_default_dataset(gw, n_waveforms, tmp)
        env = {**os.environ, "OMP_NUM_THREADS": str(cores), "OMP_WAIT_POLICY": "PASSIVE"}
        for i, (label, launcher) in enumerate(launchers.items()):
            run = tmp / f"run-{i}"
            run.mkdir()
            command = [
                *launcher,
                str(bin_dir / "twinflow"),
                "gw",
                "train",
                "--settings",
                settings,
                "--index",
                str(tmp / "index.json"),
                "--psd",
                *(str(tmp / f"{d}.h5") for d in gw["detectors"]),
                "--model",
                str(run / "model.pt"),
                "--metrics",
                str(run / "metrics.csv"),
                "--plot",
                str(run / "loss.png"),
                "--summary",
                str(run / "summary.json"),
            ]
            done = subprocess.run(command, env=env, capture_output=True, text=True)
            if done.returncode:
                raise SystemExit(f"{label}: training failed:\n{done.stderr[-2000:]}")
            summary = json.loads((run / "summary.json").read_text())
            rows.append(
                {
                    "case": label,
                    "steps": summary["steps"],
                    "seconds": summary["total_seconds"],
                    "samples_per_s": summary["samples_per_s"],
                }
            )
            print(
                f"{label:>34}: {summary['steps']} steps of {gw['train']['batch-size']} in "
                f"{summary['total_seconds']:.1f} s -> {summary['samples_per_s']:.0f} samples/s",
                flush=True,
            )
    print(f"ratio DDP / one process: {rows[1]['samples_per_s'] / rows[0]['samples_per_s']:.2f}")
    return rows


HEADER = (
    "| case | batch | threads | samples/s | data | forward | backward | optimizer | CPU ms/sample |\n"
    "|---|---|---|---|---|---|---|---|---|"
)


def _markdown_row(r: dict) -> str:
    shares = " | ".join(
        f"{100 * r[f'{k}_share']:.0f} %" for k in ("data", "forward", "backward", "optimizer")
    )
    return (
        f"| {r['case']} | {r['batch']} | {r['threads']} | {r['samples_per_s']:.0f} | {shares} | "
        f"{r['cpu_ms_per_sample']:.2f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--waveforms", type=int, default=2048)
    parser.add_argument(
        "--sweep",
        action="store_true",
        help="profile both embeddings over --batch-sizes and --thread-counts (Markdown table)",
    )
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 256, 1024])
    parser.add_argument("--thread-counts", type=int, nargs="+", default=[1, 2])
    parser.add_argument(
        "--no-options", action="store_true", help="skip bf16, SDPA backends and torch.compile"
    )
    parser.add_argument(
        "--processes",
        type=int,
        metavar="CORES",
        help="time the training stage on CORES cores: one process against CORES DDP ranks",
    )
    parser.add_argument("--json", help="also write the sweep's rows to this file")
    args = parser.parse_args()
    if args.processes:
        default = load_yaml(REPO / "config" / "config.yaml")
        rows = processes_comparison(default, args.waveforms, args.steps, args.processes)
        if args.json:
            Path(args.json).write_text(json.dumps(rows, indent=1))
        return
    if args.sweep:
        default = load_yaml(REPO / "config" / "config.yaml")
        print(HEADER)
        rows = sweep(
            default,
            args.waveforms,
            args.steps,
            args.batch_sizes,
            args.thread_counts,
            not args.no_options,
        )
        if args.json:
            Path(args.json).write_text(json.dumps(rows, indent=1))
        return
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
