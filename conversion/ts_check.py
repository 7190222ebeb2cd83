"""Run a TorchScript bundle's components in a fresh process that imports only torch + numpy.

``python -m ubdiff_onnx.conversion.ts_check BUNDLE_DIR INPUTS.npz OUTPUTS.npz`` (same array naming
as ``ubdiff_onnx.runtime.check``). Proves the bundle loads without any ubdiff-onnx model code.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch


def main(argv: list[str] | None = None) -> int:
    bundle, fin, fout = (sys.argv[1:] if argv is None else argv)
    manifest = json.loads((Path(bundle) / "manifest.json").read_text())
    with np.load(fin) as data:
        inputs = {k: data[k] for k in data.files}
    out = {}
    for name, comp in manifest["components"].items():
        names = list(comp["inputs"])
        if f"{name}.{names[0]}" not in inputs:
            continue
        module = torch.jit.load(str(Path(bundle) / comp["path"]), map_location="cpu")
        with torch.no_grad():
            result = module(*(torch.from_numpy(inputs[f"{name}.{n}"]) for n in names))
        out[f"{name}.{next(iter(comp['outputs']))}"] = result.numpy()
    # the package __init__ files are light by design (ubdiff_onnx's maps a checkout's subpackages);
    # model code (ubdiff_onnx.models, …) must not load
    light = ("ubdiff_onnx._source_tree", "ubdiff_onnx.conversion", "ubdiff_onnx.conversion.ts_check")
    loaded = sorted(m for m in sys.modules if m.startswith("ubdiff_onnx.") and m not in light)
    np.savez(fout, **out, foreign_modules=np.array(",".join(loaded)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
