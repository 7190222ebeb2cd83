"""Bundle sizes per component for the `paper` preset: FP32 vs INT8 QDQ vs QDQ + int4 seismic Linear.

Sizes do not depend on training, so seeded random weights are used: `paper.pt` (float) for the FP32
and TorchScript bundles, and `paper-qat.pt`, the same weights with every component converted to
fake-quant and its observers fed random inputs, for the QDQ bundles — the QAT export path, which
needs no data. Usage: python benchmarks/export_sizes.py [OUT_DIR] [--torchscript] [--preset=tiny]
Writes OUT_DIR/{paper.pt, paper-qat.pt, paper-fp32/, paper-qdq/, paper-int4/[, paper-ts/]} (the
folder names stay `paper-*` with --preset=tiny, the quick dry run),
OUT_DIR/sizes.json, and prints a Markdown table with each export's time and validation.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

from ubdiff_onnx import qat
from ubdiff_onnx.checkpoints.format import Checkpoint, save_checkpoint
from ubdiff_onnx.config import preset
from ubdiff_onnx.errors import UserError
from ubdiff_onnx.conversion.bundle import export_bundle
from ubdiff_onnx.models.ubdiff import UBDiff
from ubdiff_onnx.runtime.manifest import COMPONENTS


def make_checkpoints(out: Path, name: str = "paper") -> tuple[Path, Path]:
    float_ckpt, qat_ckpt = out / f"{name}.pt", out / f"{name}-qat.pt"
    if float_ckpt.exists() and qat_ckpt.exists():
        return float_ckpt, qat_ckpt
    torch.manual_seed(0)
    cfg = preset(name)
    model = UBDiff(cfg).eval()
    save_checkpoint(Checkpoint(cfg, model.state_dict(), meta={"dataset": "curvefault-a"}), float_ckpt)
    qat.prepare_qat_(model, ["velocity", "seismic", "unet"])
    qat.begin_calibration(model)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for _ in range(2):
            model.decode(torch.rand(4, cfg.latent_dim, generator=g) * 2 - 1)
            model.unet(torch.randn(8, 1, cfg.latent_dim, generator=g), torch.randint(0, cfg.timesteps, (8,), generator=g))
    qat.end_calibration(model)
    save_checkpoint(Checkpoint(cfg, qat.float_state_dict(model), None, qat.qat_state(model), {"dataset": "curvefault-a"}), qat_ckpt)
    return float_ckpt, qat_ckpt


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    out = Path(args[0] if args else "runs/bench-paper")
    name = next((a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith("--preset=")), "paper")  # tiny: a quick dry run
    out.mkdir(parents=True, exist_ok=True)
    float_ckpt, qat_ckpt = make_checkpoints(out, name)
    jobs = [("fp32", float_ckpt, {"fmt": "fp32"}), ("qdq", qat_ckpt, {"fmt": "qdq"}), ("int4", qat_ckpt, {"fmt": "qdq", "weights": "int4"})]
    if "--torchscript" in sys.argv:
        jobs.append(("ts", float_ckpt, {"fmt": "torchscript"}))
    rows, seconds = {}, {}
    for kind, ckpt, kw in jobs:
        bundle = out / f"paper-{kind}"
        if not (bundle / "manifest.json").exists():
            t = time.perf_counter()
            try:
                export_bundle(ckpt, bundle, overwrite=True, **kw)
            except UserError as exc:  # report it and go on with the other formats
                print(f"{bundle}: export failed: {exc}", flush=True)
                continue
            seconds[kind] = round(time.perf_counter() - t, 1)
            print(f"exported {bundle} in {seconds[kind]:.0f} s", flush=True)
        man = json.loads((bundle / "manifest.json").read_text())
        rows[kind] = {c: man["components"][c]["bytes"] for c in COMPONENTS}
        rows[kind]["validation"] = man.get("validation")
        rows[kind]["validation_against_fp32"] = man.get("validation_against_fp32")
        rows[kind]["op_histogram"] = (man.get("quantization") or {}).get("op_histogram")
    (out / "sizes.json").write_text(json.dumps({"bytes": rows, "export_seconds": seconds}, indent=2))
    if not {"fp32", "qdq", "int4"} <= set(rows):
        sys.exit(1)
    total = {k: sum(rows[k][c] for c in COMPONENTS) for k in ("fp32", "qdq", "int4")}
    print("| component | FP32 bytes | QDQ bytes | QDQ/FP32 | QDQ+int4 bytes | int4/FP32 |")
    print("|---|---:|---:|---:|---:|---:|")
    for c in COMPONENTS:
        f, q, i = rows["fp32"][c], rows["qdq"][c], rows["int4"][c]
        print(f"| {c} | {f:,} | {q:,} | {q / f:.1%} | {i:,} | {i / f:.1%} |")
    print(f"| **total** | {total['fp32']:,} | {total['qdq']:,} | {total['qdq'] / total['fp32']:.1%} | {total['int4']:,} | {total['int4'] / total['fp32']:.1%} |")
    (out / "sizes.json").write_text(json.dumps({"bytes": rows, "totals": total, "export_seconds": seconds}, indent=2))


if __name__ == "__main__":
    main()
