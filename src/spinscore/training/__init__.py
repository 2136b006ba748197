"""Training loop, data stream and checkpoints."""
