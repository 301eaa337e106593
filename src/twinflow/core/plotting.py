"""One plotting style for every report figure, and atomic figure writes."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # jobs run headless; never try to open a window
import matplotlib.pyplot as plt  # noqa: E402

from twinflow.core.io import atomic_path  # noqa: E402

STYLE = {
    "figure.dpi": 110,
    "savefig.dpi": 110,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "font.size": 10,
    "legend.frameon": False,
}


def figure(*args, **kwargs):
    """Return ``plt.subplots(*args, **kwargs)`` under the project style."""
    with plt.rc_context(STYLE):
        return plt.subplots(*args, **kwargs)


def save_figure(fig, path: str | Path) -> None:
    """Write ``fig`` to ``path`` atomically (format from the suffix) and close it."""
    path = Path(path)
    with plt.rc_context(STYLE), atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip(".") or "png", bbox_inches="tight")
    plt.close(fig)
