"""Training: the three UB-Diff stages and the two QAT stages, resumable, single- or multi-process.

Entry point :func:`train` (the ``ubdiff-onnx train`` command); the run folder layout is described
in :mod:`ubdiff_onnx.training.rundir`, per-preset settings in :mod:`ubdiff_onnx.training.config`.
"""

from ubdiff_onnx.training.config import PHASES, STAGE_CHOICES, STAGES, Overrides, PhaseConfig, phase_defaults
from ubdiff_onnx.training.runner import TrainOptions, train

__all__ = ["PHASES", "STAGE_CHOICES", "STAGES", "Overrides", "PhaseConfig", "phase_defaults", "TrainOptions", "train"]
