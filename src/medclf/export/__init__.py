"""Export a run's best weights to self-describing ONNX, verified against PyTorch."""
