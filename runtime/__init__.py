"""The Raspberry Pi runtime: numpy + onnxruntime only. Nothing here may import torch or onnx."""
