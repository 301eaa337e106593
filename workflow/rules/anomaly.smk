# anomaly rules (added with the stage).
