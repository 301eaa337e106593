"""Dingo-T1-style amortized gravitational-wave inference.

Shared physics at the top: ``detectors`` (geometry, antenna patterns, sidereal time),
``prior``, ``waveforms``, ``domain`` (uniform and multibanded grids) and ``psd`` (PSD banks).
One subpackage per job: ``dataset`` (frequency grid, waveform shards, tokens, batch
assembly), ``training`` (embedding, posterior model, training loop) and ``inference``
(events, likelihood, importance sampling, outputs, report). ``settings`` resolves each
stage's settings from the config without importing torch.
"""
