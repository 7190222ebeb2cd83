"""ubdiff-onnx: UB-Diff through QAT to INT8 ONNX, sampled with pure onnxruntime + numpy.

Importing this package must stay light: it does not import torch. The torch model lives in
``ubdiff_onnx.models``, the Pi runtime in ``ubdiff_onnx.runtime`` (numpy + onnxruntime only).
"""

__version__ = "0.1.0"
