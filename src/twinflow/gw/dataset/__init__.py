"""The training data: frequency grid, waveform shards, detector projection, tokens and masks,
and the batches assembled from them on the training device."""
