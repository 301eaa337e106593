"""Dingo-T1-style amortized gravitational-wave inference.

Stages, one module each: ``psd`` (PSD banks), ``domain`` (uniform and multibanded frequency
grids), ``waveforms`` (prior and polarisations), ``tokens`` (on-the-fly training inputs and
masks), ``model`` and ``train`` (transformer + normalizing flow), ``likelihood`` and
``importance`` (per-event importance sampling).
"""
