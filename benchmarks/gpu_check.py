"""Check the CUDA training path of the production-sized gw model in one short run.

On a CUDA machine (under 5 minutes on one modern GPU):

1. the model of ``config/production.yaml`` (``gw.train.model``) is built on the CPU and on the
   GPU from the same settings (same weights); the float32 NLL of one fixed batch at step 0
   must agree between the two to ``--tolerance`` (TF32 off for this comparison);
2. which fused attention kernels (flash, memory-efficient) accept the model's inputs: a
   padded batch carries a key mask, which flash attention does not take;
3. ``--steps`` AdamW steps with mixed precision (bfloat16 where supported, else float16 with
   a gradient scaler, as ``twinflow.core.device.autocast``) on a fixed synthetic batch: the
   loss must fall; prints samples/s, peak GPU memory and the time per million samples;
4. with more than one GPU visible, the same steps data-parallel (DDP over NCCL, one process
   per GPU, started with torchrun by this script).

5. the same CPU/GPU step-0 agreement and AMP steps for the svd-mlp embedding (Dingo's baseline
   at its published scale, a random orthonormal basis, unmasked batches: it takes no masks).

Without CUDA it runs its CPU part (steps 1 and 5 on the CPU only), says that the rest needs CUDA,
and exits 0. Exit status 1 means a check failed. Batches are synthetic (the shapes of
Dingo-T1's input: 3 detectors x 69 tokens of 16 bins x 3 channels, 15 parameters): this checks
the device path, not what the model learns.

    bash benchmarks/gpu_check.sh [--batch-size 1024] [--steps 30]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
N_PARAMETERS, DETECTORS, TOKENS_PER_DETECTOR = 15, ("H1", "L1", "V1"), 69


def production_model(device: torch.device):
    from twinflow.gw.training.model import PosteriorModel

    architecture = production_architecture()
    return PosteriorModel(model_settings(architecture)).to(device), architecture


def production_architecture() -> dict:
    """config/production.yaml's `gw.train.model` block."""
    config = yaml.safe_load((REPO / "config" / "production.yaml").read_text())
    return config["gw"]["train"]["model"]


def model_settings(architecture: dict, **extra) -> dict:
    """Model settings for N_PARAMETERS standardised parameters over DETECTORS."""
    from twinflow.gw.training.model import build_model_settings

    return build_model_settings(
        parameters=[f"theta_{i}" for i in range(N_PARAMETERS)],
        mean=[0.0] * N_PARAMETERS,
        std=[1.0] * N_PARAMETERS,
        detectors=list(DETECTORS),
        frequency_scale=1810.0,
        architecture=architecture,
        seed=1,
        **extra,
    )


#: Dingo's SVD + residual-MLP baseline at its published scale (200 basis vectors; the
#: residual net's width), feeding the production flow.
SVD_MLP_PRODUCTION = {
    "basis-size": 200,
    "training-waveforms": 50_000,
    "hidden": 1024,
    "blocks": 8,
    "context": 128,
    "dropout": 0.0,
}


def svd_mlp_model(device: torch.device):
    """The svd-mlp embedding with the production flow; a random orthonormal basis (seeded)."""
    from twinflow.gw.training.model import PosteriorModel

    architecture = {
        **production_architecture(),
        "embedding": "svd-mlp",
        "svd-mlp": SVD_MLP_PRODUCTION,
    }
    edges = torch.linspace(20.0, 1810.0, TOKENS_PER_DETECTOR + 1)
    settings = model_settings(architecture, **{"svd-token-lower-edges": edges[:-1].tolist()})
    model = PosteriorModel(settings)
    g = torch.Generator().manual_seed(5)
    n = TOKENS_PER_DETECTOR * 16
    k = SVD_MLP_PRODUCTION["basis-size"]
    basis = torch.linalg.qr(torch.randn(n, k, dtype=torch.complex128, generator=g))[0]
    model.encoder.set_basis(basis)
    return model.to(device)


def synthetic_batch(batch_size: int, seed: int, pad: bool = True) -> dict:
    """Tokens [B, N, 48] with detector index, frequency edges and a key mask, and θ."""
    g = torch.Generator().manual_seed(seed)
    n = len(DETECTORS) * TOKENS_PER_DETECTOR
    edges = torch.linspace(20.0, 1810.0, TOKENS_PER_DETECTOR + 1)
    token_frequency = torch.stack([edges[:-1], edges[1:]], dim=-1).repeat(len(DETECTORS), 1)
    detector_index = torch.arange(len(DETECTORS)).repeat_interleave(TOKENS_PER_DETECTOR)
    # Dropped tokens sit at the end of each row, as the batch assembler compacts them.
    n_dropped = torch.randint(0, TOKENS_PER_DETECTOR, (batch_size,), generator=g) if pad else None
    padding = (
        torch.arange(n)[None, :] >= (n - n_dropped)[:, None]
        if pad
        else torch.zeros(batch_size, n, dtype=torch.bool)
    )
    theta = torch.randn(batch_size, N_PARAMETERS, generator=g)
    tokens = torch.randn(batch_size, n, 48, generator=g) + 0.1 * theta[:, :1, None]
    return {
        "tokens": tokens,
        "detector_index": detector_index.expand(batch_size, n).clone(),
        "token_frequency": token_frequency.expand(batch_size, n, 2).clone(),
        "padding_mask": padding,
        "parameters": {f"theta_{i}": theta[:, i] for i in range(N_PARAMETERS)},
    }


def to(batch: dict, device: torch.device) -> dict:
    from twinflow.core.device import to_device

    return to_device(batch, device)


def step0_loss(model, batch) -> float:
    model.eval()
    with torch.no_grad():
        return float(-model(batch).mean())


def attention_backends(device: torch.device) -> dict[str, str]:
    """Which fused SDPA kernels run the encoder's attention, with and without a key mask."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    q = torch.randn(8, 16, 208, 64, device=device, dtype=torch.bfloat16)
    mask = torch.ones(8, 1, 1, 208, dtype=torch.bool, device=device)
    mask[..., -20:] = False
    out = {}
    for name, backend in (
        ("flash", SDPBackend.FLASH_ATTENTION),
        ("efficient", SDPBackend.EFFICIENT_ATTENTION),
    ):
        for label, m in (("no mask", None), ("key mask", mask)):
            try:
                with sdpa_kernel([backend]):
                    torch.nn.functional.scaled_dot_product_attention(q, q, q, attn_mask=m)
                out[f"{name}, {label}"] = "yes"
            except RuntimeError as err:
                out[f"{name}, {label}"] = f"no ({str(err).splitlines()[0][:60]})"
    return out


def train_steps(model, batch, steps: int, device: torch.device):
    """AdamW with mixed precision on a fixed batch; return (losses, seconds per step)."""
    from twinflow.core.device import autocast, grad_scaler

    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    scaler = grad_scaler(device)
    losses, times = [], []
    for _ in range(steps):
        torch.cuda.synchronize(device)
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        with autocast(device):
            loss = -model(batch).mean()
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        scaler.step(optimizer)
        scaler.update()
        torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
        losses.append(float(loss))
    return losses, sum(times[2:]) / max(1, len(times) - 2)  # the first steps warm up


def report_throughput(label: str, batch_size: int, seconds: float, device) -> None:
    rate = batch_size / seconds
    peak = torch.cuda.max_memory_allocated(device) / 2**30
    print(
        f"{label}: {rate:,.0f} samples/s, {seconds * 1e3:.1f} ms/step, peak memory "
        f"{peak:.1f} GiB, {1e6 / rate / 60:.1f} min per million samples"
    )


def ddp_worker(args) -> int:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    dist.init_process_group("nccl")
    rank, world = dist.get_rank(), dist.get_world_size()
    device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    torch.cuda.set_device(device)
    model, _ = production_model(device)
    model = DistributedDataParallel(model, device_ids=[device.index])
    per_rank = args.batch_size // world
    batch = to(synthetic_batch(per_rank, seed=10 + rank), device)
    losses, seconds = train_steps(model, batch, args.steps, device)
    if rank == 0:
        report_throughput(
            f"DDP x{world} (global batch {per_rank * world})", per_rank * world, seconds, device
        )
        print(f"DDP loss {losses[0]:.3f} -> {losses[-1]:.3f}")
    ok = losses[-1] < losses[0]
    dist.destroy_process_group()
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=1024, help="training batch (per run)")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--compare-size", type=int, default=8, help="batch of the CPU/GPU check")
    parser.add_argument("--tolerance", type=float, default=2e-3, help="relative, step-0 NLL")
    parser.add_argument("--ddp-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.ddp_worker:
        return ddp_worker(args)

    torch.manual_seed(0)
    failures = []
    cpu_model, architecture = production_model(torch.device("cpu"))
    n_weights = sum(p.numel() for p in cpu_model.parameters())
    print(f"production model: {architecture}; {n_weights / 1e6:.1f} M parameters")
    small = synthetic_batch(args.compare_size, seed=1)
    start = time.perf_counter()
    cpu_loss = step0_loss(cpu_model, small)
    print(
        f"CPU float32 step-0 NLL ({args.compare_size} samples): {cpu_loss:.5f} "
        f"in {time.perf_counter() - start:.1f} s"
    )

    svd_cpu = svd_mlp_model(torch.device("cpu"))
    svd_small = synthetic_batch(args.compare_size, seed=3, pad=False)  # it takes no masks
    start = time.perf_counter()
    svd_cpu_loss = step0_loss(svd_cpu, svd_small)
    print(
        f"svd-mlp model ({sum(p.numel() for p in svd_cpu.parameters()) / 1e6:.1f} M parameters): "
        f"CPU float32 step-0 NLL {svd_cpu_loss:.5f} in {time.perf_counter() - start:.1f} s"
    )

    if not torch.cuda.is_available():
        print(
            "gpu_check: CUDA is not available here; the GPU checks need a CUDA machine "
            "(the CPU part ran)."
        )
        return 0

    device = torch.device("cuda", 0)
    print(
        f"GPU: {torch.cuda.get_device_name(device)}, torch {torch.__version__}, "
        f"bf16 {'yes' if torch.cuda.is_bf16_supported() else 'no'}"
    )
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    gpu_model, _ = production_model(device)
    gpu_model.load_state_dict(cpu_model.state_dict())
    gpu_loss = step0_loss(gpu_model, to(small, device))
    relative = abs(gpu_loss - cpu_loss) / max(1.0, abs(cpu_loss))
    print(f"GPU float32 step-0 NLL: {gpu_loss:.5f} (relative difference {relative:.1e})")
    if relative > args.tolerance:
        failures.append(f"CPU and GPU step-0 NLL differ by {relative:.1e} > {args.tolerance}")
    svd_gpu = svd_mlp_model(device)
    svd_gpu.load_state_dict(svd_cpu.state_dict())
    svd_gpu_loss = step0_loss(svd_gpu, to(svd_small, device))
    svd_relative = abs(svd_gpu_loss - svd_cpu_loss) / max(1.0, abs(svd_cpu_loss))
    print(f"svd-mlp GPU float32 step-0 NLL: {svd_gpu_loss:.5f} (relative {svd_relative:.1e})")
    if svd_relative > args.tolerance:
        failures.append(
            f"svd-mlp: CPU and GPU step-0 NLL differ by {svd_relative:.1e} > {args.tolerance}"
        )
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True

    for name, answer in attention_backends(device).items():
        print(f"SDPA {name}: {answer}")

    del cpu_model
    torch.cuda.reset_peak_memory_stats(device)
    batch = to(synthetic_batch(args.batch_size, seed=2), device)
    losses, seconds = train_steps(gpu_model, batch, args.steps, device)
    report_throughput(f"1 GPU, AMP, batch {args.batch_size}", args.batch_size, seconds, device)
    print(f"loss {losses[0]:.3f} -> {losses[-1]:.3f} over {args.steps} steps")
    if not losses[-1] < losses[0]:
        failures.append("the AMP training loss did not fall on a fixed batch")

    torch.cuda.reset_peak_memory_stats(device)
    svd_batch = to(synthetic_batch(args.batch_size, seed=4, pad=False), device)
    losses, seconds = train_steps(svd_gpu, svd_batch, args.steps, device)
    report_throughput(
        f"svd-mlp, 1 GPU, AMP, batch {args.batch_size}", args.batch_size, seconds, device
    )
    print(f"svd-mlp loss {losses[0]:.3f} -> {losses[-1]:.3f} over {args.steps} steps")
    if not losses[-1] < losses[0]:
        failures.append("svd-mlp: the AMP training loss did not fall on a fixed batch")
    del svd_gpu, svd_batch, svd_cpu

    gpus = torch.cuda.device_count()
    if gpus > 1:
        del gpu_model, batch
        torch.cuda.empty_cache()
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={gpus}",
            __file__,
            "--ddp-worker",
            f"--batch-size={args.batch_size}",
            f"--steps={args.steps}",
        ]
        if subprocess.run(command, cwd=REPO).returncode != 0:
            failures.append("the DDP run failed or its loss did not fall")
    else:
        print("one GPU visible: the DDP check needs two or more")

    for failure in failures:
        print(f"gpu_check: FAILED: {failure}")
    print("gpu_check: all checks passed" if not failures else "")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
