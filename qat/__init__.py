"""Quantization-aware training: fake-quant modules that export to ONNX QuantizeLinear/DequantizeLinear."""
