"""The waveform dataset: intrinsic prior draws and their polarisations, in HDF5 shards.

Three steps, one Snakemake job each (``workflow/rules/gw_dataset.smk``):

1. :func:`resolve_domain` writes ``domain.json``: the multibanded domain, from the configured
   nodes or (``nodes: auto``) proposed from waveforms of the prior by
   :func:`twinflow.gw.domain.propose_nodes`.
2. :func:`simulate_shard` writes ``shard-{i}.h5``: ``parameters/<name>`` [n] for every
   non-fixed intrinsic parameter, ``h_plus`` and ``h_cross`` [n, n_bins] complex64 at the
   reference distance on the multibanded domain, and the settings as attributes. Shard i
   draws from its own stream (seed, i), so it is reproducible alone; waveforms are made and
   written ``chunk-size`` at a time, so memory stays bounded whatever the shard size.
3. :func:`write_index` writes ``index.json`` (shards, counts, domain and settings).

:class:`WaveformDataset` reads the shards back for training, a block at a time.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import h5py
import numpy as np

from twinflow.core.io import atomic_path, read_settings, write_json, write_provenance
from twinflow.core.progress import progress
from twinflow.core.seeding import numpy_rng
from twinflow.core.settings import (
    ConfigError,
    require,
    require_file,
    require_nyquist,
    require_positive,
)
from twinflow.gw.domain import (
    MultibandedFrequencyDomain,
    UniformFrequencyDomain,
    domain_from_settings,
    propose_nodes,
)
from twinflow.gw.prior import EXTRINSIC, build_prior, sample, sampled_parameters, split_prior
from twinflow.gw.waveforms import WaveformGenerator, check_approximant

ANALYSIS_KEYS = ("duration", "sampling-frequency", "minimum-frequency", "maximum-frequency")


def intrinsic_spec(prior_spec: Mapping) -> dict:
    """Return the intrinsic entries of a prior spec (what the shards are drawn from)."""
    return {k: v for k, v in prior_spec.items() if k not in EXTRINSIC}


def _check_analysis(settings: Mapping) -> None:
    for key in ("duration", "sampling-frequency", "minimum-frequency", "maximum-frequency"):
        require_positive(key, settings[key])
    require_nyquist(
        "maximum-frequency", settings["maximum-frequency"], settings["sampling-frequency"]
    )
    require(
        settings["minimum-frequency"] < settings["maximum-frequency"],
        "minimum-frequency",
        settings["minimum-frequency"],
        f"below maximum-frequency = {settings['maximum-frequency']}",
    )
    UniformFrequencyDomain(settings["duration"], settings["sampling-frequency"])


def _check_intrinsic_prior(spec: Mapping):
    """Build the intrinsic prior; the extrinsic entries are checked by the batch settings."""
    # A full prior is needed for bilby's checks; extrinsic parameters are fixed placeholders here.
    prior = build_prior({**{k: 0.0 for k in EXTRINSIC}, **spec})
    return split_prior(prior)[0]


# --------------------------------------------------------------------------------------------
# 1. The domain


def check_domain_settings(settings: Mapping) -> None:
    """Raise :class:`ConfigError` for invalid domain settings, before any work."""
    _check_analysis(settings)
    nodes = settings["domain"]["nodes"]
    if nodes == "auto":
        tol = settings["domain"]["tolerance"]
        require(
            isinstance(tol, (int, float)) and 0 < tol < 1,
            "dataset.domain.tolerance",
            tol,
            "a fraction in (0, 1)",
        )
        require(
            isinstance(settings["domain"]["n-waveforms"], int)
            and settings["domain"]["n-waveforms"] >= 1,
            "dataset.domain.n-waveforms",
            settings["domain"]["n-waveforms"],
            "an integer >= 1",
        )
        check_approximant(settings["approximant"])
        _check_intrinsic_prior(settings["prior"])
    else:
        require(
            isinstance(nodes, list),
            "dataset.domain.nodes",
            nodes,
            "'auto' or a list of frequencies [Hz]",
        )
        _domain_from_nodes(nodes, settings)


def _domain_from_nodes(nodes: Sequence[float], settings: Mapping) -> MultibandedFrequencyDomain:
    domain = MultibandedFrequencyDomain(
        nodes, settings["duration"], settings["sampling-frequency"]
    )
    if (
        domain.f_min != settings["minimum-frequency"]
        or domain.f_max != settings["maximum-frequency"]
    ):
        raise ConfigError(
            f"dataset.domain.nodes = {list(nodes)!r} is invalid: the first and last nodes must be "
            f"minimum-frequency = {settings['minimum-frequency']} and maximum-frequency = "
            f"{settings['maximum-frequency']} Hz"
        )
    return domain


def resolve_domain(settings: Mapping, out: str | Path, log=print) -> MultibandedFrequencyDomain:
    """Write the multibanded domain (``domain.json``): configured nodes, or proposed ones."""
    check_domain_settings(settings)
    nodes = settings["domain"]["nodes"]
    proposal = None
    if nodes == "auto":
        fs, duration = settings["sampling-frequency"], settings["duration"]
        f_min, f_max = settings["minimum-frequency"], settings["maximum-frequency"]
        # Waveforms on the full band: a one-band "domain" over [f_min, f_max) at delta_f = 1/T.
        span = (f_max - f_min) * duration
        tokens_ok = span % 16 == 0
        if not tokens_ok:
            raise ConfigError(
                f"maximum-frequency - minimum-frequency = {f_max - f_min:g} Hz is not a whole number of "
                f"16-bin tokens at delta_f = 1/duration ({16 / duration:g} Hz): adjust either for nodes: auto"
            )
        full = MultibandedFrequencyDomain(
            [f_min, f_max], duration, fs, key="minimum-/maximum-frequency"
        )
        generator = WaveformGenerator(
            full, settings["approximant"], settings["reference-frequency"]
        )
        intrinsic = _check_intrinsic_prior(settings["prior"])
        draws = sample(
            intrinsic, settings["domain"]["n-waveforms"], numpy_rng(settings["seed"], "domain")
        )
        h_plus, h_cross = generator.uniform(draws)
        waveforms = np.zeros((2 * len(h_plus), len(full.base)), dtype=complex)
        waveforms[:, full.uniform_slice] = np.concatenate([h_plus, h_cross])
        nodes = propose_nodes(
            waveforms, duration, fs, f_min, f_max, settings["domain"]["tolerance"]
        )
        proposal = {
            "tolerance": settings["domain"]["tolerance"],
            "n-waveforms": settings["domain"]["n-waveforms"],
        }
    domain = _domain_from_nodes(nodes, settings)
    write_json(
        out,
        {
            "domain": domain.settings,
            "n-bins": domain.n_bins,
            "n-tokens": domain.n_tokens,
            "proposal": proposal,
        },
    )
    log(f"domain: {domain}")
    return domain


def load_domain(path: str | Path) -> MultibandedFrequencyDomain:
    """Return the domain written by :func:`resolve_domain` (or stored in an index)."""
    data = json.loads(require_file("domain", path).read_text())
    return domain_from_settings(data["domain"])


# --------------------------------------------------------------------------------------------
# 2. Shards


def check_shard_settings(settings: Mapping) -> None:
    """Raise :class:`ConfigError` for invalid shard settings, before any work."""
    _check_analysis(settings)
    check_approximant(settings["approximant"])
    for key in ("reference-frequency", "reference-distance"):
        require_positive(f"dataset.{key}", settings[key])
    for key in ("shard-size", "chunk-size"):
        require(
            isinstance(settings[key], int) and settings[key] >= 1,
            f"dataset.{key}",
            settings[key],
            "an integer >= 1",
        )
    _check_intrinsic_prior(settings["prior"])


def shard_settings_check_index(settings: Mapping, index: int) -> None:
    n = settings.get("n-shards")
    require(
        isinstance(index, int) and index >= 0 and (n is None or index < n),
        "shard",
        index,
        "an index >= 0" + (f" and < n-shards = {n}" if n is not None else ""),
    )


def simulate_shard(
    settings: Mapping, domain_path: str | Path, index: int, out: str | Path, log=print
) -> None:
    """Simulate shard ``index`` and write it to ``out`` (HDF5), streaming chunk by chunk."""
    check_shard_settings(settings)
    shard_settings_check_index(settings, index)
    domain = load_domain(domain_path)
    require(
        domain.base.duration == settings["duration"]
        and domain.base.sampling_frequency == settings["sampling-frequency"],
        "domain",
        str(domain_path),
        f"a domain for duration = {settings['duration']} s and sampling-frequency = "
        f"{settings['sampling-frequency']} Hz",
    )
    generator = WaveformGenerator(
        domain,
        settings["approximant"],
        settings["reference-frequency"],
        settings["reference-distance"],
    )
    intrinsic = _check_intrinsic_prior(settings["prior"])
    names = sampled_parameters(intrinsic)
    n, chunk = settings["shard-size"], settings["chunk-size"]
    # All draws first (a few floats each): the shard is the same whatever the chunk size.
    draws = sample(intrinsic, n, numpy_rng(settings["seed"], "dataset", index))
    with atomic_path(out) as tmp, h5py.File(tmp, "w") as f:
        group = f.create_group("parameters")
        for name in names:
            group.create_dataset(name, data=draws[name])
        kwargs = dict(
            shape=(n, domain.n_bins), dtype=np.complex64, chunks=(min(chunk, n), domain.n_bins)
        )
        h_plus, h_cross = (
            f.create_dataset("h_plus", **kwargs),
            f.create_dataset("h_cross", **kwargs),
        )
        for start in progress(
            range(0, n, chunk), desc=f"shard {index}", total=-(-n // chunk), unit="chunk"
        ):
            stop = min(n, start + chunk)
            hp, hc = generator({k: v[start:stop] for k, v in draws.items()}, dtype=np.complex64)
            h_plus[start:stop] = hp
            h_cross[start:stop] = hc
        write_provenance(
            f,
            settings,
            shard=index,
            seed=settings["seed"],
            n=n,
            domain=domain.settings,
            parameters=names,
            fixed={k: float(v.peak) for k, v in intrinsic.items() if k not in names},
        )
    log(f"shard {index}: wrote {n} waveforms on {domain.n_bins} bins to {out}")


# --------------------------------------------------------------------------------------------
# 3. The index


def write_index(shards: Sequence[str | Path], out: str | Path) -> dict:
    """Index the shards (their paths relative to the index, counts, domain, settings)."""
    out = Path(out)
    entries, reference = [], None
    for path in shards:
        path = require_file("shard", path)
        with h5py.File(path, "r") as f:
            settings = read_settings(f)
            attrs = {k: f.attrs[k] for k in ("shard", "n")}
            domain = json.loads(f.attrs["domain"])
            parameters = json.loads(f.attrs["parameters"])
            fixed = json.loads(f.attrs["fixed"])
        if reference is None:
            reference = (settings, domain, parameters, fixed)
        elif (settings, domain) != reference[:2]:
            raise ConfigError(
                f"shard {str(path)!r} was made with other settings than {str(shards[0])!r}: "
                "rerun the dataset"
            )
        entries.append(
            {
                "path": os.path.relpath(Path(path).resolve(), out.resolve().parent),
                "shard": int(attrs["shard"]),
                "n": int(attrs["n"]),
            }
        )
    settings, domain, parameters, fixed = reference
    index = {
        "kind": "gw-waveform-dataset",
        "n-total": sum(e["n"] for e in entries),
        "shards": entries,
        "domain": domain,
        "parameters": parameters,
        "fixed": fixed,
        "settings": settings,
    }
    write_json(out, index)
    return index


class WaveformDataset:
    """The sharded waveform dataset behind an ``index.json``, read a block at a time.

    ``parameters`` names the stored (non-fixed) intrinsic parameters; ``fixed`` holds the
    fixed ones; ``domain`` is the multibanded domain; ``reference_distance`` [Mpc] the
    distance of the stored polarisations.
    """

    def __init__(self, index_path: str | Path):
        index_path = require_file("dataset index", index_path)
        self.index = json.loads(index_path.read_text())
        require(
            self.index.get("kind") == "gw-waveform-dataset",
            "dataset index",
            str(index_path),
            "an index.json written by the gw dataset stage",
        )
        self.paths = [(index_path.parent / e["path"]).resolve() for e in self.index["shards"]]
        self.counts = np.array([e["n"] for e in self.index["shards"]])
        self.offsets = np.concatenate([[0], np.cumsum(self.counts)])
        self.domain = domain_from_settings(self.index["domain"])
        self.parameters: list[str] = list(self.index["parameters"])
        self.fixed: dict[str, float] = dict(self.index["fixed"])
        self.settings: dict = self.index["settings"]
        self.reference_distance = float(self.settings["reference-distance"])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def read(self, shard: int, start: int, stop: int) -> dict[str, np.ndarray]:
        """Return rows [start, stop) of one shard: ``h_plus``, ``h_cross`` and each parameter."""
        with h5py.File(self.paths[shard], "r") as f:
            block = {"h_plus": f["h_plus"][start:stop], "h_cross": f["h_cross"][start:stop]}
            for name in self.parameters:
                block[name] = f["parameters"][name][start:stop]
        return block

    def load(self) -> dict[str, np.ndarray]:
        """Return the whole dataset in memory (for small datasets; training may stream instead)."""
        blocks = [self.read(i, 0, int(n)) for i, n in enumerate(self.counts)]
        return {k: np.concatenate([b[k] for b in blocks]) for k in blocks[0]}

    def batches(
        self,
        batch_size: int,
        rng: np.random.Generator,
        block_size: int = 4096,
        drop_last: bool = True,
    ) -> Iterator[dict[str, np.ndarray]]:
        """Yield shuffled batches for one pass over the data, reading ``block_size`` rows at a time.

        Blocks (contiguous rows of one shard) are visited in random order, and rows are
        shuffled within a buffer of two blocks, so memory stays at a few blocks whatever the
        dataset size while every row is seen once per pass.
        """
        blocks = [
            (i, s, min(int(n), s + block_size))
            for i, n in enumerate(self.counts)
            for s in range(0, int(n), block_size)
        ]
        order = rng.permutation(len(blocks))
        buffer: dict[str, np.ndarray] | None = None
        for b in order:
            block = self.read(*blocks[b])
            buffer = (
                block
                if buffer is None
                else {k: np.concatenate([buffer[k], block[k]]) for k in block}
            )
            perm = rng.permutation(len(buffer["h_plus"]))
            buffer = {k: v[perm] for k, v in buffer.items()}
            while len(buffer["h_plus"]) >= batch_size + block_size:
                yield {k: v[:batch_size] for k, v in buffer.items()}
                buffer = {k: v[batch_size:] for k, v in buffer.items()}
        while buffer is not None and len(buffer["h_plus"]) >= (batch_size if drop_last else 1):
            yield {k: v[:batch_size] for k, v in buffer.items()}
            buffer = {k: v[batch_size:] for k, v in buffer.items()}


# --------------------------------------------------------------------------------------------
# Plots


def plot_examples(
    batch_settings: Mapping,
    index_path: str | Path,
    psd_paths: Mapping[str, str | Path],
    strain_plot: str | Path,
    mask_plot: str | Path,
    seed: int = 0,
    n_masks: int = 24,
) -> None:
    """Plot the whitened strain of one example per detector (token edges marked) and a few masks."""
    import torch

    from twinflow.core.plotting import figure, save_figure
    from twinflow.gw.tokens import BatchAssembler

    assembler = BatchAssembler.from_files(
        batch_settings, index_path, psd_paths, device="cpu", seed=seed
    )
    dataset = WaveformDataset(index_path)
    domain = assembler.domain
    example = dataset.read(0, 0, 1)
    # The noiseless whitened signal and one noisy realisation, all tokens kept.
    h_plus = torch.as_tensor(example["h_plus"]).to(torch.complex64)
    h_cross = torch.as_tensor(example["h_cross"]).to(torch.complex64)
    extrinsic = assembler.sample_extrinsic(1)
    signal = assembler.signal(h_plus, h_cross, extrinsic)[0]  # [D, n_bins]
    sigma = torch.stack([s[0] for s in assembler.sigma])  # first PSD of each bank
    clean = (signal / sigma).numpy()
    gen = torch.Generator().manual_seed(seed)
    noisy = (
        clean
        + (
            torch.randn(clean.shape, generator=gen) + 1j * torch.randn(clean.shape, generator=gen)
        ).numpy()
    )
    f = domain.sample_frequencies
    D = len(assembler.detectors)
    fig, axes = figure(D, 1, figsize=(7.5, 2.4 * D), sharex=True, squeeze=False)
    snr = np.sqrt(np.sum(np.abs(clean) ** 2, axis=1))
    for d, ax in enumerate(axes[:, 0]):
        ax.plot(f, noisy[d].real, lw=0.6, color="0.6", label="Re, signal + noise")
        ax.plot(f, clean[d].real, lw=1.0, color="C0", label="Re, signal")
        ax.plot(f, clean[d].imag, lw=1.0, color="C1", label="Im, signal")
        for edge in domain.token_edges[:, 0]:
            ax.axvline(edge, color="k", lw=0.3, alpha=0.3)
        for node in domain.nodes:
            ax.axvline(node, color="C3", lw=0.8, alpha=0.7)
        ax.set_ylabel(f"{assembler.detectors[d]} whitened")
        ax.set_xscale("log")
        ax.set_title(
            f"{assembler.detectors[d]}: optimal SNR {snr[d]:.1f} (first bank PSD)", fontsize=9
        )
    axes[0, 0].legend(loc="upper right", fontsize=7, ncol=3)
    axes[-1, 0].set_xlabel("frequency [Hz] (grey: token edges, red: band nodes)")
    save_figure(fig, strain_plot)

    zeros = np.zeros((n_masks, domain.n_bins), np.complex64)
    params = {name: np.zeros(n_masks) for name in dataset.parameters}
    batch = assembler({"h_plus": zeros, "h_cross": zeros, **params}, masks=True, noise=False)
    keep = np.zeros((n_masks, assembler.n_tokens), bool)
    T = domain.n_tokens
    for b in range(n_masks):
        valid = ~batch["padding_mask"][b].numpy()
        det = batch["detector_index"][b].numpy()[valid]
        lower = batch["token_frequency"][b, :, 0].numpy()[valid]
        pos = np.searchsorted(domain.token_edges[:, 0], lower - 1e-9)
        keep[b, det * T + pos] = True
    fig, ax = figure(figsize=(7.5, 0.18 * n_masks + 1.2))
    ax.imshow(keep, aspect="auto", cmap="Greys", interpolation="nearest", vmin=0, vmax=1)
    ax.grid(False)
    for d in range(1, D):
        ax.axvline(d * T - 0.5, color="C3", lw=1)
    ax.set_xticks([d * T + T / 2 for d in range(D)], assembler.detectors)
    ax.set_ylabel("training sample")
    ax.set_title(f"token masks (black: kept; {T} tokens per detector)", fontsize=9)
    save_figure(fig, mask_plot)
