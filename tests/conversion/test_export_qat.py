"""``export --format qdq`` from a QAT checkpoint: the graph carries the checkpoint's own scales (not
recalibrated ones), every heavy op runs INT8, and onnxruntime agrees with the fake-quant model."""

import numpy as np
import onnx
from onnx import numpy_helper
from ubdiff_onnx.conversion.quantize import float_heavy_ops, optimized_op_histogram
from ubdiff_onnx.conversion.validate import QAT_MIN_COSINE
from ubdiff_onnx.runtime.manifest import COMPONENTS, read_manifest

from ubdiff_onnx.checkpoints.format import load_checkpoint


def _inits(path) -> dict[str, np.ndarray]:
    return {i.name: numpy_helper.to_array(i) for i in onnx.load(str(path)).graph.initializer}


def test_qat_bundle_is_int8_and_matches_the_fake_quant_model(tiny_qat_bundle):
    man = read_manifest(tiny_qat_bundle)
    man.verify_files()
    assert man.precision == "qdq"
    q = man.data["quantization"]
    assert q["method"].startswith("quantization-aware training")
    for name in COMPONENTS:
        assert not float_heavy_ops(optimized_op_histogram(man.component_path(name), man.graph_optimization(name))), name
        assert q["qat"][name]["layers_from_qat"] > 0
    # QAT keeps the U-Net's time MLP float by default: the export quantizes it by calibration and says so
    assert "unet.time_mlp.fc1" in q["qat"]["unet"]["calibrated_at_export"]
    assert q["qat"]["unet"]["float_side_inputs"] > 0  # residual Adds read float x, as in training
    assert q["qat"]["velocity_decoder"]["calibrated_at_export"] == q["qat"]["seismic_decoder"]["calibrated_at_export"] == []
    for key, v in man.data["validation"].items():
        assert v["cosine"] >= QAT_MIN_COSINE or not v["checked"], key
    assert set(man.data["validation_against_fp32"]) == set(man.data["validation"])


def test_qat_bundle_stores_the_checkpoint_scales_and_int8_weights(tiny_qat_bundle, tiny_qat_checkpoint):
    ckpt = load_checkpoint(tiny_qat_checkpoint)
    qs = ckpt.qat["quantizers"]
    man = read_manifest(tiny_qat_bundle)

    unet = _inits(man.component_path("unet"))
    w_scale = np.asarray(qs["unet.init_conv.weight_quant"]["scale"], dtype=np.float32)
    np.testing.assert_array_equal(unet["unet.init_conv.weight_scale"], w_scale)
    w = ckpt.state_dict["unet.init_conv.weight"].numpy()
    want = np.clip(np.rint(w / w_scale[:, None, None]), -127, 127).astype(np.int8)
    assert unet["unet.init_conv.weight_quantized"].dtype == np.int8
    assert np.mean(unet["unet.init_conv.weight_quantized"] == want) > 0.99  # ties may round either way
    assert unet["x_scale"] == np.float32(qs["unet.init_conv.input_quant"]["scale"])
    assert unet["x_zero_point"] == qs["unet.init_conv.input_quant"]["zero_point"]

    # The velocity decoder's ConvTranspose became four phase convs: each keeps the per-channel scales
    vel = _inits(man.component_path("velocity_decoder"))
    ct_scale = np.asarray(qs["velocity_decoder.blocks.2.conv.weight_quant"]["scale"], dtype=np.float32)
    for phase in range(4):
        np.testing.assert_array_equal(vel[f"decoder.blocks.2.conv.phases.{phase}.weight_scale"], ct_scale)

    seis = _inits(man.component_path("seismic_decoder"))
    np.testing.assert_array_equal(seis["decoder.out.weight_scale"],
                                  np.asarray(qs["seismic_decoder.out.weight_quant"]["scale"], dtype=np.float32))
