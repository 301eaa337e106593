"""The posterior model (transformer embedding + normalizing flow) and its training loop."""
