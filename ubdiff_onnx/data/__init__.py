"""OpenFWI-format data: read it, make it, look at it.

- :mod:`.openfwi` — folder layout, pairing, validation, memory-mapped access, train/val/paired split (numpy)
- :mod:`.dataset` — the torch ``Dataset`` of normalised tensors
- :mod:`.forward` — velocity → seismic, OpenFWI's wave simulation (deepwave)
- :mod:`.velocity_models` — the flatvel/curvevel/flatfault/curvefault families
- :mod:`.synth` — ``data synth``: a whole dataset, multi-process and atomic
- :mod:`.embedded` — the default dataset, generated once into the user cache
- :mod:`.plot` — PNG of a velocity map and its shot gathers

Normalisation constants and transforms live in :mod:`ubdiff_onnx.runtime.normalization` (shared with
the torch-free runtime). Nothing is imported here, so ``import ubdiff_onnx.data`` stays cheap.
"""
