"""Run each bundle component on given inputs in a torch-free process (used to validate exports).

``python -m ubdiff_onnx.runtime.check BUNDLE_DIR INPUTS.npz OUTPUTS.npz``: INPUTS holds arrays
named ``<component>.<input>``; OUTPUTS receives ``<component>.<output>``. Running in its own
process proves the bundle loads with onnxruntime + numpy alone.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from ubdiff_onnx.runtime.int8_host import session_config
from ubdiff_onnx.runtime.manifest import COMPONENTS, BundleError, read_manifest
from ubdiff_onnx.runtime.sessions import make_session


def run_components(bundle_dir: Path, inputs: dict[str, np.ndarray], threads: int = 0) -> dict[str, np.ndarray]:
    manifest = read_manifest(bundle_dir)
    manifest.verify_files()
    config = session_config(manifest.data, str(manifest.root))
    out: dict[str, np.ndarray] = {}
    for name in COMPONENTS:
        feeds = {k.split(".", 1)[1]: v for k, v in inputs.items() if k.split(".", 1)[0] == name}
        if not feeds:
            continue
        sess = make_session(manifest.component_path(name), threads, optimization=manifest.graph_optimization(name), config=config)
        declared = list(manifest.component(name)["inputs"])
        actual = [i.name for i in sess.get_inputs()]
        if declared != actual:
            raise BundleError(f"{manifest.component_path(name)}: ONNX inputs {actual} do not match the manifest {declared}")
        for oname, value in zip((o.name for o in sess.get_outputs()), sess.run(None, feeds)):
            out[f"{name}.{oname}"] = value
        del sess
    return out


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 3:
        print("usage: python -m ubdiff_onnx.runtime.check BUNDLE_DIR INPUTS.npz OUTPUTS.npz", file=sys.stderr)
        return 2
    try:
        with np.load(args[1]) as data:
            inputs = {k: data[k] for k in data.files}
        outputs = run_components(Path(args[0]), inputs)
    except BundleError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    np.savez(args[2], **outputs, torch_loaded=np.array("torch" in sys.modules))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
