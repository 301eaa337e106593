"""Progress bars for long work, readable both in a terminal and in a Snakemake log file."""

from __future__ import annotations

import sys
from collections.abc import Iterable

from tqdm.auto import tqdm


def progress(
    iterable: Iterable | None = None,
    *,
    desc: str,
    total: int | None = None,
    unit: str = "it",
    **kwargs,
) -> tqdm:
    """Return a tqdm bar; in log files (no terminal) it updates at most every 10 s."""
    interactive = sys.stderr.isatty()
    kwargs.setdefault("mininterval", 0.1 if interactive else 10.0)
    kwargs.setdefault("dynamic_ncols", interactive)
    return tqdm(iterable, desc=desc, total=total, unit=unit, file=sys.stderr, **kwargs)
