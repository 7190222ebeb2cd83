"""The sample PNG (velocity map + 5 shot gathers)."""

from __future__ import annotations

import numpy as np

from ubdiff_onnx.data.plot import plot_sample


def test_plot_sample_writes_a_png(tmp_path):
    rng = np.random.default_rng(0)
    v = np.full((1, 70, 70), 2000.0, np.float32)
    v[:, 40:] = 3500.0
    s = rng.standard_normal((5, 1000, 70)).astype(np.float32)
    out = plot_sample(v, s, tmp_path / "deep" / "x.png", title="test")
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000


def test_velocity_only_plot(tmp_path):
    out = plot_sample(np.full((70, 70), 2500.0), None, tmp_path / "v.png")
    assert out.read_bytes()[:4] == b"\x89PNG"


def test_generated_vs_real_png_shares_the_real_colour_scale(tmp_path):
    from ubdiff_onnx.data.plot import plot_generated_vs_real

    rng = np.random.default_rng(0)
    gen = (np.full((2, 1, 70, 70), 2000.0), rng.normal(size=(2, 5, 1000, 70)) * 100)  # loud gathers
    real = (np.full((3, 1, 70, 70), 3000.0), rng.normal(size=(3, 5, 1000, 70)))
    out = plot_generated_vs_real(gen, real, tmp_path / "cmp.png", "caption seed 0")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and not list(tmp_path.glob("*.tmp.png"))
