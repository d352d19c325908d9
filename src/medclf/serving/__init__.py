"""Inference for predict and serve: one Predictor interface over PyTorch runs and ONNX files."""
