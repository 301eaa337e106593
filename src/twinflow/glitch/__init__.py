"""glitch: Glitch Flow (auxiliary-channel glitches translated to strain, then subtracted) and the
VAE glitch detector, on whitened Q-transform images."""
