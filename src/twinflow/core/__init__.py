"""Pieces shared by more than one branch: settings, atomic outputs, device, seeding,
progress bars, plotting style, checkpoints and coloured noise."""
