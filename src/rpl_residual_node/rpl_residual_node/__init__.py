"""Residual mixing with an ONNX actor: clamp, base-action fallback, hot reload."""
