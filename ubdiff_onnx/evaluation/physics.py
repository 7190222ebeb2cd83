"""Physics consistency: is a generated seismic record the one its generated velocity map would produce?

UB-Diff decodes velocity and seismic from one latent with two independent decoders; nothing forces
them to agree with the wave equation. We forward-model each generated velocity map with OpenFWI's
scheme (:func:`ubdiff_onnx.data.forward.forward_model`, deepwave, one torch thread) and compare the
result with the generated seismic: relative L2 ‖s_gen − F(v_gen)‖ / ‖F(v_gen)‖ (raw and log
amplitude) and Pearson correlation. The same numbers on *real* pairs of the dataset give the
floor of the method (0 for data we synthesised with the same code; for downloaded OpenFWI data
deepwave's PML differs from OpenFWI's sponge by ~0.1–4 % RMS, mostly late in the record).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ubdiff_onnx.evaluation.fidelity import seismic_errors


def forward_seismic(velocity_ms: Any, batch_size: int = 16) -> np.ndarray:
    """Velocity (N,1,70,70) m/s → simulated seismic (N,5,1000,70), OpenFWI amplitude units, 1 thread."""
    from ubdiff_onnx.data.forward import forward_model

    return forward_model(np.asarray(velocity_ms, dtype=np.float32), batch_size=batch_size, threads=1)


def physics_errors(velocity_ms: Any, seismic: Any, simulated: Any | None = None) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Per-sample errors of ``seismic`` against the forward model of ``velocity_ms``.

    Returns (``{"rel_l2", "corr", "rel_l2_log"}`` arrays of shape (N,), the simulated seismic).
    Pass ``simulated`` to reuse an existing forward model.
    """
    sim = forward_seismic(velocity_ms) if simulated is None else np.asarray(simulated)
    return seismic_errors(seismic, sim), sim
