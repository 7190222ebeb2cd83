"""Post-training INT8 QDQ quantization with ``onnxruntime.quantization`` (the no-QAT path and the
baseline QAT must beat), optional 4-bit MatMulNBits weights for the seismic decoder's big Linear,
and the check that every heavy operator really runs as an INT8 kernel after ORT's optimisation.

Scheme (SPEC §5): uint8 per-tensor affine activations, int8 symmetric per-channel weights, QDQ
format; weights in [-64, 64] by default (``reduce_range``: exact on x86 without VNNI, whose
VPMADDUBSW kernels saturate with full-range weights; docs/int8-cpus.md); calibration inputs for the
U-Net come from DDIM trajectories (timesteps spread along the sampling path), for the decoders from
encoder latents of real velocity maps.
"""

from __future__ import annotations

import collections
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

HEAVY_FLOAT_OPS = {"Conv", "ConvTranspose", "Gemm", "MatMul", "FusedConv", "FusedGemm", "FusedMatMul", "NchwcConv"}
INT8_OPS = {"QLinearConv", "QGemm", "QLinearMatMul", "MatMulInteger", "ConvInteger", "DynamicQuantizeMatMul",
            "MatMulIntegerToFloat", "QLinearConvTranspose", "MatMulNBits"}


@dataclass(frozen=True)
class QuantizationConfig:
    """How ``export --format qdq --calibrate DATA`` quantizes (recorded in the manifest)."""

    activation_type: str = "uint8"
    weight_type: str = "int8"
    per_channel: bool = True
    calibrate_method: str = "minmax"
    calibration_samples: int = 32
    """Velocity maps encoded for the decoders' calibration set."""
    calibration_trajectories: int = 8
    calibration_steps: int = 50
    """U-Net calibration inputs: (x_t, t) of every step of this many seeded DDIM trajectories."""
    weight_range: str = "reduced"
    """"reduced": int8 weights in [-64, 64] (onnxruntime's ``reduce_range``), exact on every CPU;
    "full": [-127, 127] (PTQ) / [-128, 127] (QAT), exact on ARM and x86 with VNNI only."""
    op_types: tuple[str, ...] = ("Conv", "Gemm", "MatMul")
    int4_seismic: bool = False
    int4_block_size: int = 128
    """128 (onnxruntime's default): on the paper seismic Linear, blocks of 32/64/128 give output cosine
    0.9977/0.9976/0.9975 against FP32 (random weights) while the scales cost 28/14/7 MB."""
    seed: int = 0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["op_types"] = list(self.op_types)
        return d


class _Reader:
    """``CalibrationDataReader`` over a list of feed dicts."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]) -> None:
        self._feeds = feeds
        self._it: Iterator | None = None

    def get_next(self):
        if self._it is None:
            self._it = iter(self._feeds)
        return next(self._it, None)

    def rewind(self) -> None:
        self._it = None


def calibration_feeds(model, velocities: np.ndarray | None, cfg: QuantizationConfig) -> dict[str, list[dict[str, np.ndarray]]]:
    """Feeds per component: the U-Net sees DDIM trajectories plus every timestep once; the decoders
    see the trajectories' x̂0 and, given ``velocities`` (PTQ from data), encoder latents of them."""
    import torch

    with torch.no_grad():
        latents = (np.zeros((0, model.cfg.latent_dim), np.float32) if velocities is None else
                   model.encode(torch.from_numpy(np.ascontiguousarray(velocities, dtype=np.float32))).numpy())
        g = torch.Generator().manual_seed(cfg.seed)
        x = torch.randn(cfg.calibration_trajectories, 1, model.cfg.latent_dim, generator=g)
        unet_feeds: list[dict[str, np.ndarray]] = []

        def recorder(xt, t):
            unet_feeds.append({"x": xt.numpy().copy(), "t": t.numpy().copy()})
            return model.unet(xt, t)

        x0 = model.diffusion.ddim_sample(recorder, x, cfg.calibration_steps)
        # A DDIM run visits only `steps` timesteps, but the time-embedding path depends on t alone:
        # add every t in [0, T) once, with inputs noised from the trajectories' x̂0 (in distribution).
        steps = model.cfg.timesteps
        every_t = torch.arange(steps)
        xt = model.diffusion.q_sample(x0[every_t % x0.shape[0]], every_t, torch.randn(steps, *x0.shape[1:], generator=g))
        for i in range(0, steps, 8):
            unet_feeds.append({"x": xt[i:i + 8].numpy().copy(), "t": every_t[i:i + 8].numpy().copy()})
    # The decoders see encoder latents in training and the U-Net's x̂0 when sampling: calibrate on both.
    latents = np.concatenate([latents, x0.reshape(x0.shape[0], -1).numpy()])
    batches = [latents[i:i + 8] for i in range(0, len(latents), 8)]
    return {
        "unet": unet_feeds,
        "velocity_decoder": [{"latent": b} for b in batches],
        "seismic_decoder": [{"latent": b} for b in batches],
    }


def quantize_component(fp32_path: Path, out_path: Path, feeds: list[dict[str, np.ndarray]], cfg: QuantizationConfig,
                       exclude: Iterable[str] = (), overrides: dict | None = None) -> None:
    """``quant_pre_process`` + ``quantize_static`` (QDQ). ``overrides`` (TensorQuantOverrides) pin
    tensors to given scales — the QAT path; ORT then must not rescale weights for int32 biases."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    qtype = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}
    method = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile, "entropy": CalibrationMethod.Entropy}[cfg.calibrate_method]
    with tempfile.TemporaryDirectory(prefix="ubdiff-quant-", dir=out_path.parent) as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=True)
        quantize_static(
            str(pre), str(out_path), _Reader(feeds), quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(cfg.op_types), per_channel=cfg.per_channel,
            activation_type=qtype[cfg.activation_type], weight_type=qtype[cfg.weight_type],
            calibrate_method=method, nodes_to_exclude=list(exclude), reduce_range=cfg.weight_range == "reduced",
            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True,
                           "TensorQuantOverrides": overrides or {},
                           "QDQDisableWeightAdjustForInt32Bias": bool(overrides)},
        )


def int8_extents(path: Path) -> dict[str, list[int]]:
    """Integer extents of a QDQ graph: ``weights`` [min, max] over the int8 initializers that a
    DequantizeLinear reads, ``activations`` [min, max] of the uint8 activation type ([0, 255])."""
    import onnx
    from onnx import numpy_helper

    from ubdiff_onnx.runtime.int8_host import ACTIVATION_RANGE

    model = onnx.load(str(path))
    inits = {i.name: i for i in model.graph.initializer}
    lo, hi = 0, 0
    for node in model.graph.node:
        init = inits.get(node.input[0]) if node.op_type == "DequantizeLinear" else None
        if init is not None and init.data_type == onnx.TensorProto.INT8:
            q = numpy_helper.to_array(init)
            if q.size:
                lo, hi = min(lo, int(q.min())), max(hi, int(q.max()))
    return {"activations": list(ACTIVATION_RANGE), "weights": [lo, hi]}


def int8_record(extents: dict[str, dict[str, list[int]]], weight_range: str) -> dict:
    """The manifest's ``int8`` block: the integer ranges the bundle assumes and what they need.

    ``max_pair_sum`` = 2 · max|activation| · max|weight|: above ``PAIR_SUM_LIMIT`` the bundle is
    exact on the fast u8·s8 kernels only where products are summed in 32 bits (ARM, x86 with AVX-512
    VNNI or AVX-VNNI); elsewhere ``runtime/int8_host.py`` runs it on onnxruntime's slower u8·u8 ones.
    Raises if a weight lies outside ``weight_range``."""
    from ubdiff_onnx.runtime.int8_host import ACTIVATION_RANGE, PAIR_SUM_LIMIT, WEIGHT_RANGES, max_pair_sum

    lo, hi = WEIGHT_RANGES[weight_range]
    outside = {name: e["weights"] for name, e in extents.items() if e["weights"][0] < lo or e["weights"][1] > hi}
    if outside:
        raise RuntimeError(f"int8 weights outside the {weight_range} range [{lo}, {hi}]: {outside}")
    pair = max_pair_sum(weight_range)
    return {
        "activations": {"dtype": "uint8", "range": list(ACTIVATION_RANGE)},
        "weights": {"dtype": "int8", "range": [lo, hi], "weight_range": weight_range},
        "components": extents,
        "max_pair_sum": pair,
        "saturates_without_vnni": pair > PAIR_SUM_LIMIT,
    }


def _matmul_add(gemm, weight_kn: str) -> list:
    """``Gemm(A, B, C)`` as ``MatMul(A, weight_kn)`` (+ ``Add(·, C)``), with the Gemm's module-scope
    metadata on the MatMul; ``weight_kn`` names the [K, N] weight."""
    from onnx import helper

    mm_out = gemm.output[0] + ("_matmul" if len(gemm.input) > 2 else "")
    mm = helper.make_node("MatMul", [gemm.input[0], weight_kn], [mm_out], name=f"{gemm.name}_matmul")
    mm.metadata_props.extend(gemm.metadata_props)
    if len(gemm.input) < 3:
        return [mm]
    return [mm, helper.make_node("Add", [mm_out, gemm.input[2]], [gemm.output[0]], name=f"{gemm.name}_bias")]


def _big_gemms_to_matmul(model, min_weights: int) -> list[str]:
    """Rewrite Gemm(A, B, C) with a large constant B as MatMul(A, Bᵀ) + C (exact), in place.

    MatMulNBits replaces MatMul nodes only; the exporter emits the seismic Linear as a Gemm.
    Returns the new MatMul node names.
    """
    import onnx
    from onnx import helper, numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    new_nodes, names = [], []
    for node in model.graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        b = inits.get(node.input[1]) if node.op_type == "Gemm" and len(node.input) > 1 else None
        if (b is None or attrs.get("transA", 0) or attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0
                or int(np.prod(b.dims)) < min_weights):
            new_nodes.append(node)
            continue
        w = numpy_helper.to_array(b)
        w = w.T if attrs.get("transB", 0) else w
        wt_name = f"{node.name}_weight_kn"
        model.graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(w), wt_name))
        replacement = _matmul_add(node, wt_name)
        new_nodes.extend(replacement)
        names.append(replacement[0].name)
    if names:
        used = {i for n in new_nodes for i in n.input}
        keep = [i for i in model.graph.initializer if i.name in used]
        del model.graph.initializer[:]
        model.graph.initializer.extend(keep)
        del model.graph.node[:]
        model.graph.node.extend(new_nodes)
        onnx.checker.check_model(model)
    return names


def int4_big_matmul(fp32_path: Path, out_path: Path, block_size: int = 128, min_weights: int = 1_000_000) -> list[str]:
    """4-bit block-wise symmetric weights (MatMulNBits) for the Linear layers with ≥ ``min_weights``
    weights — in UB-Diff only the seismic decoder's 640→350000 — and nothing else; returns their names."""
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer

    from onnx import numpy_helper

    model = onnx.load(str(fp32_path))
    big = _big_gemms_to_matmul(model, min_weights)
    others = [n.name for n in model.graph.node if n.name not in big]
    # A block longer than the reduction dimension K is padded with zeros (a tiny model's K = 32 would
    # store 4x the weights at block 128): cap it at the largest power of two <= K (MatMulNBits: >= 16).
    inits = {i.name: i for i in model.graph.initializer}
    ks = [int(numpy_helper.to_array(inits[n.input[1]]).shape[0]) for n in model.graph.node if n.name in big]
    if ks:
        block_size = max(16, min(block_size, 1 << (min(ks).bit_length() - 1)))
    algo = DefaultWeightOnlyQuantConfig(block_size=block_size, is_symmetric=True, accuracy_level=4)
    quant = MatMulNBitsQuantizer(model, nodes_to_exclude=others, algo_config=algo)
    quant.process()
    quant.model.save_model_to_file(str(out_path), use_external_data_format=False)
    done = onnx.load(str(out_path), load_external_data=False)
    return [n.name for n in done.graph.node if n.op_type == "MatMulNBits"]


def optimized_op_histogram(path: Path, optimization: str = "all") -> dict[str, int]:
    """Operator counts of the graph onnxruntime actually runs (``optimized_model_filepath``), at the
    graph optimisation level the bundle's manifest asks for. The saved graph is only counted, never
    run, so onnxruntime's warning that an "all"-level file is hardware-specific is silenced."""
    import onnx

    from ubdiff_onnx.runtime.sessions import make_session

    with tempfile.TemporaryDirectory(prefix="ubdiff-opt-") as tmp:
        opt = Path(tmp) / "optimized.onnx"
        make_session(path, threads=1, optimized_model_path=opt, optimization=optimization, quiet=True)
        model = onnx.load(str(opt), load_external_data=False)
    return dict(collections.Counter(n.op_type for n in model.graph.node).most_common())


def float_heavy_ops(histogram: dict[str, int]) -> dict[str, int]:
    return {op: n for op, n in histogram.items() if op in HEAVY_FLOAT_OPS}


def untranspose_big_gemms_(path: Path, min_weights: int = 1_000_000) -> list[str]:
    """Store large quantized Gemm weights as [K, N] and compute MatMul + Add, in place.

    The exporter writes ``Linear`` as ``Gemm(transB=1)`` with the weight [N, K]; onnxruntime then
    transposes it into a temporary copy while pre-packing, so a session holds three copies at its
    peak. For the seismic decoder's 224 M-weight Linear that is +222 MiB (737 → 515 MiB for the
    session). onnxruntime fuses DQ(W[K,N]) → MatMul → Add(DQ bias) → Q back into one QGemm, so the
    kernel and the numbers are unchanged (tested); returns the rewritten nodes' names.
    """
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}
    uses: dict[str, int] = collections.Counter(i for n in graph.node for i in n.input)
    new_nodes, done = [], []
    for node in graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        dq = producer.get(node.input[1]) if node.op_type == "Gemm" and len(node.input) > 1 else None
        w = inits.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
        if (w is None or not attrs.get("transB", 0) or attrs.get("transA", 0) or attrs.get("alpha", 1.0) != 1.0
                or attrs.get("beta", 1.0) != 1.0 or int(np.prod(w.dims)) < min_weights or uses[dq.output[0]] != 1
                or uses[w.name] != 1):
            new_nodes.append(node)
            continue
        w.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(numpy_helper.to_array(w).T), w.name))
        for a in dq.attribute:
            if a.name == "axis":
                a.i = 1
        new_nodes.extend(_matmul_add(node, node.input[1]))
        done.append(node.name)
    if done:
        del graph.node[:]
        graph.node.extend(new_nodes)
        onnx.checker.check_model(model)
        onnx.save(model, str(path))
    return done
