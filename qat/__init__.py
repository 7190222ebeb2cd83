"""Quantization-aware training: fake-quant modules that export to ONNX QuantizeLinear/DequantizeLinear.

Typical use (what ``ubdiff-onnx train --stage qat-*`` does)::

    prepare_qat_(model, ["velocity"])          # fold BN, insert fake-quant (in place)
    begin_calibration(model.velocity_decoder)   # observers on
    ... run a few batches ...
    end_calibration(model)                     # ranges → scales; now LSQ-trainable
    ... train ...; ckpt.qat = qat_state(model); ckpt.state_dict = float_state_dict(model)

and on the export side ``model_from_checkpoint(load_checkpoint(path))``.
"""

from ubdiff_onnx.qat.fake_quant import ActFakeQuant, WeightFakeQuant
from ubdiff_onnx.qat.modules import QConv1d, QConv2d, QConvTranspose2d, QLinear, QMatMul
from ubdiff_onnx.qat.prepare import (
    COMPONENTS,
    QATConfig,
    begin_calibration,
    constrain_,
    end_calibration,
    is_calibrated,
    prepare_qat_,
    qat_info,
    quant_layers,
    quant_parameters,
    quantizers,
    set_quant_enabled,
)
from ubdiff_onnx.qat.state import float_state_dict, model_from_checkpoint, qat_state, restore_qat_

__all__ = [
    "ActFakeQuant",
    "WeightFakeQuant",
    "QConv1d",
    "QConv2d",
    "QConvTranspose2d",
    "QLinear",
    "QMatMul",
    "COMPONENTS",
    "QATConfig",
    "begin_calibration",
    "constrain_",
    "end_calibration",
    "is_calibrated",
    "prepare_qat_",
    "qat_info",
    "quant_layers",
    "quant_parameters",
    "quantizers",
    "set_quant_enabled",
    "float_state_dict",
    "model_from_checkpoint",
    "qat_state",
    "restore_qat_",
]
