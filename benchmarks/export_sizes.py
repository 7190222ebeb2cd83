"""Bundle sizes per component for the `paper` preset: FP32 vs INT8 QDQ vs QDQ + int4 seismic Linear.

Sizes do not depend on training, so a seeded random-weight `paper` checkpoint is used and PTQ is
calibrated on the embedded dataset. Usage: python benchmarks/export_sizes.py [OUT_DIR]
Writes OUT_DIR/{paper.pt, paper-fp32/, paper-qdq/, paper-int4/} and prints a Markdown table.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

from ubdiff_onnx.checkpoints.format import Checkpoint, save_checkpoint
from ubdiff_onnx.config import preset
from ubdiff_onnx.conversion.bundle import export_bundle
from ubdiff_onnx.data.embedded import embedded_dataset
from ubdiff_onnx.models.ubdiff import UBDiff
from ubdiff_onnx.runtime.manifest import COMPONENTS


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/bench-paper")
    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / "paper.pt"
    if not ckpt.exists():
        torch.manual_seed(0)
        cfg = preset("paper")
        save_checkpoint(Checkpoint(cfg, UBDiff(cfg).state_dict(), meta={"dataset": "curvefault-a"}), ckpt)
    data = embedded_dataset()
    rows = {}
    for name, kw in (("fp32", {"fmt": "fp32"}), ("qdq", {"fmt": "qdq", "calibrate": data}), ("int4", {"fmt": "qdq", "calibrate": data, "weights": "int4"})):
        bundle = out / f"paper-{name}"
        if not (bundle / "manifest.json").exists():
            t = time.perf_counter()
            export_bundle(ckpt, bundle, overwrite=True, **kw)
            print(f"exported {bundle} in {time.perf_counter() - t:.0f} s", flush=True)
        man = json.loads((bundle / "manifest.json").read_text())
        rows[name] = {c: man["components"][c]["bytes"] for c in COMPONENTS}
        rows[name]["validation"] = man.get("validation")
    total = {k: sum(v[c] for c in COMPONENTS) for k, v in rows.items()}
    print("| component | FP32 bytes | QDQ bytes | QDQ/FP32 | QDQ+int4 bytes | int4/FP32 |")
    print("|---|---:|---:|---:|---:|---:|")
    for c in COMPONENTS:
        f, q, i = rows["fp32"][c], rows["qdq"][c], rows["int4"][c]
        print(f"| {c} | {f:,} | {q:,} | {q / f:.1%} | {i:,} | {i / f:.1%} |")
    print(f"| **total** | {total['fp32']:,} | {total['qdq']:,} | {total['qdq'] / total['fp32']:.1%} | {total['int4']:,} | {total['int4'] / total['fp32']:.1%} |")
    (out / "sizes.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
