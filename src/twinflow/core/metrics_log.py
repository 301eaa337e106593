"""Per-epoch training metrics: a CSV file and the loss-curve plot that feed the report."""

from __future__ import annotations

import csv
from pathlib import Path

from twinflow.core.io import atomic_path
from twinflow.core.plotting import figure, save_figure


def write_metrics_csv(path: str | Path, rows: list[dict]) -> None:
    """Write one row per epoch (columns from the first row), atomically."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        if rows:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)


def plot_loss_curve(
    path: str | Path, rows: list[dict], *, title: str, ylabel: str = "loss"
) -> None:
    """Plot ``train_loss`` and ``val_loss`` against ``epoch`` from metric rows."""
    fig, ax = figure(figsize=(5.5, 3.5))
    epochs = [r["epoch"] for r in rows]
    for key, label in (("train_loss", "training"), ("val_loss", "validation")):
        if rows and key in rows[0]:
            ax.plot(epochs, [r[key] for r in rows], marker="o", ms=3, label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend()
    save_figure(fig, path)
