"""twinflow: a Snakemake pipeline for deep-generative physics analyses.

Three branches share one package: ``twinflow.gw`` (amortized gravitational-wave inference),
``twinflow.glitch`` (Glitch Flow: auxiliary-channel glitches to strain, and a VAE detector)
and ``twinflow.anomaly`` (resonant anomaly detection). ``twinflow.core`` holds the few pieces
they really share.
"""

__version__ = "0.1.0"
