"""Export of the torch model to ONNX (FP32 / QDQ) and TorchScript bundles, with validation."""
