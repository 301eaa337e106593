"""Per-event inference: events (injections, real strain), the exact likelihood, importance
sampling, outputs and the report."""
