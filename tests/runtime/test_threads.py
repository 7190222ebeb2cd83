"""The default thread rule (one thread per component, as measured); a fixed --threads applies to
every session."""

from ubdiff_onnx.runtime.backends import component_threads


def test_component_threads():
    assert [component_threads(c, 0) for c in ("unet", "velocity_decoder", "seismic_decoder")] == [1, 1, 1]
    assert [component_threads(c, 2) for c in ("unet", "velocity_decoder", "seismic_decoder")] == [2, 2, 2]
