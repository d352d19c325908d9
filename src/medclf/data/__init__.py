"""Data layer: discovery, decoding, splitting, synthetic data and the training DataModule."""
