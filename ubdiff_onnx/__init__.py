"""ubdiff-onnx: UB-Diff through QAT to INT8 ONNX, sampled with pure onnxruntime + numpy.

Importing this package must stay light: it does not import torch. The torch model lives in
``ubdiff_onnx.models``, the Pi runtime in ``ubdiff_onnx.runtime`` (numpy + onnxruntime only).
"""

__version__ = "0.1.0"

from ubdiff_onnx._source_tree import map_source_subpackages

# ``runtime/``, ``qat/`` and ``conversion/`` sit at the repository's top and are installed as
# ``ubdiff_onnx.runtime`` etc. Python puts the working folder first on ``sys.path`` for ``python -m``,
# so inside a clone this very folder can shadow the installed package; map them then as the install does.
map_source_subpackages(__name__, __file__)
