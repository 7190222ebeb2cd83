"""``ubdiff-onnx bench``: measure bundles side by side, each runtime and thread count in a fresh process.

* ``worker`` — ``python -m ubdiff_onnx.bench.worker``: one bundle, one thread count, one process
  (numpy + onnxruntime + ``ubdiff_onnx.runtime`` only for ONNX bundles);
* ``run`` — the orchestrator: interleaved rounds, aggregation, ratios, the issues' targets;
* ``macs`` — MACs per component counted from the ONNX graph; ``machine`` — CPU facts and peak rates;
* ``report`` — bench.json / bench.md / bench.png.

Importing this package imports nothing heavy.
"""
