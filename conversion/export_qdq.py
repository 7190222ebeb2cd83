"""INT8 QDQ bundle components by post-training quantization of the FP32 graphs.

The velocity decoder's ConvTranspose layers are first rewritten exactly (see ``rewrite.py``) so
that onnxruntime can run them as QLinearConv; then each FP32 graph is calibrated and quantized,
and the optimised graph is checked: a heavy operator left in float fails the export.
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
from torch import nn

from ubdiff_onnx.conversion.components import component_modules
from ubdiff_onnx.conversion.export_onnx import OPSET, export_component
from ubdiff_onnx.conversion.qat_scales import clip_to_qat_ranges_, float_side_inputs_, qat_overrides, restrict
from ubdiff_onnx.conversion.quantize import (
    QuantizationConfig,
    float_heavy_ops,
    int4_big_matmul,
    int8_extents,
    int8_record,
    optimized_op_histogram,
    quantize_component,
    untranspose_big_gemms_,
)
from ubdiff_onnx.conversion.rewrite import flatten_linears_, fold_batchnorm, rewrite_velocity_decoder
from ubdiff_onnx.conversion.timestep_table import tabulate_timestep_path_
from ubdiff_onnx.errors import UserError
from ubdiff_onnx.runtime.manifest import COMPONENTS, io_spec


UNET_OPTIMIZATION = "extended"
"""Graph optimisation level the runtime uses for the QDQ U-Net. Level "all" adds the NHWC layout
transform, which wraps each 1-D QLinearConv in a Transpose pair (+139 nodes on `paper`); at batch 1
that made the step slower (paper, 2-core x86: 5.8 vs 5.4 ms). The 2-D velocity decoder gains from
it (2.9 vs 3.5 ms), so the other components keep "all"."""


def int8_ready_copy(model, qat_quantizers: dict[str, dict] | None = None, report: dict[str, Any] | None = None):
    """A deep copy ready for INT8: with ``qat_quantizers``, weights clamped to their QAT ranges
    (``qat_scales.clip_to_qat_ranges_``; the count goes to ``report``); BatchNorm folded into the
    preceding conv/linear of both decoder paths (a BN left after a rewritten ConvTranspose would run
    in float between DQ/Q pairs), then the velocity decoder's ConvTranspose layers rewritten exactly,
    and the ViT's token Linears flattened so each exports as a Gemm with its bias."""
    m = copy.deepcopy(model).eval()
    if qat_quantizers is not None:
        moved = clip_to_qat_ranges_(m, qat_quantizers)
        if report is not None:
            report["weights_clamped_to_range"] = moved
    for block in [*m.velocity_decoder.blocks, m.velocity_decoder.head]:
        fold_batchnorm(block.conv, block.norm)
        block.norm = nn.Identity()
    for proj in (m.velocity_projector, m.seismic_projector):
        fold_batchnorm(proj.fc, proj.norm)
        proj.norm = nn.Identity()
    rewrite_velocity_decoder(m.velocity_decoder)
    flatten_linears_(m.seismic_decoder)
    return m


def export_qdq_components(model, stage_dir: Path, feeds: dict[str, list[dict[str, np.ndarray]]], qcfg: QuantizationConfig,
                          progress: Callable[[str], None] | None = None, *, qat_quantizers: dict[str, dict] | None = None,
                          fake_quant_model=None) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Quantize the three graphs of the float ``model`` into ``stage_dir``; returns (manifest
    component entries, report; ``report["int8"]`` is the manifest's ``int8`` block). With
    ``qat_quantizers`` (a QAT checkpoint's scales, and its ``fake_quant_model``) every tensor QAT quantized keeps its QAT scale (``qat_scales.py``);
    calibration ranges from ``feeds`` fill in the rest."""
    import onnx

    latent_dim = model.cfg.latent_dim
    entries: dict[str, dict[str, Any]] = {}
    extents: dict[str, dict[str, list[int]]] = {}
    report: dict[str, Any] = {"scheme": qcfg.to_dict(), "op_histogram": {}, "int4_nodes": []}
    if qat_quantizers is not None:
        report["qat"] = {}
    work = int8_ready_copy(model, qat_quantizers, report.get("qat"))
    modules = component_modules(work)
    with tempfile.TemporaryDirectory(prefix=".fp32-", dir=stage_dir) as tmp:
        for name in COMPONENTS:
            fp32 = Path(tmp) / f"{name}.onnx"
            export_component(name, modules[name], latent_dim, fp32)
            src, exclude = fp32, []
            if name == "seismic_decoder" and qcfg.int4_seismic:
                src = Path(tmp) / f"{name}.int4.onnx"
                exclude = int4_big_matmul(fp32, src, qcfg.int4_block_size)
                report["int4_nodes"] = exclude
            overrides = None
            if qat_quantizers is not None:
                mapping = qat_overrides(onnx.load(str(fp32), load_external_data=False), name, qat_quantizers, fake_quant_model)
                overrides = restrict(mapping.overrides, onnx.load(str(src), load_external_data=False))
            rel = f"{name}/model.onnx"
            out = stage_dir / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            quantize_component(src, out, feeds[name], qcfg, exclude, overrides)
            if qat_quantizers is not None:
                quantized = onnx.load(str(out))
                mapping.side_inputs_restored = float_side_inputs_(quantized, mapping.input_only)
                if mapping.side_inputs_restored:
                    onnx.save(quantized, str(out))
                report["qat"][name] = mapping.report()
            fp32.unlink()
            report.setdefault("untransposed_gemms", {})[name] = untranspose_big_gemms_(out)
            extents[name] = int8_extents(out)
            session_hint = {}
            if name == "unet":
                table = tabulate_timestep_path_(out, model.cfg.timesteps)
                report["timestep_table"] = table.to_dict() if table else None
                session_hint = {"graph_optimization": UNET_OPTIMIZATION}
            hist = optimized_op_histogram(out, session_hint.get("graph_optimization", "all"))
            report["op_histogram"][name] = hist
            left = float_heavy_ops(hist)
            if left:
                raise UserError(f"{name}: after onnxruntime optimisation these heavy ops still run in float: {left}; the INT8 export is not real")
            entries[name] = {"path": rel, "format": "onnx", "opset": OPSET, **io_spec(latent_dim)[name], **session_hint}
            if progress:
                progress(name)
    report["int8"] = int8_record(extents, qcfg.weight_range)
    return entries, report
