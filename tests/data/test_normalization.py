"""OpenFWI constants and the shared (de)normalisation (``ubdiff_onnx.runtime.normalization``)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from ubdiff_onnx.errors import UserError
from ubdiff_onnx.runtime.normalization import (
    DATASETS,
    OPENFWI,
    NormConstants,
    constants_for,
    denormalize_seismic,
    denormalize_velocity,
    load_constants,
    normalize_seismic,
    normalize_velocity,
    resolve_constants,
)


def test_official_table_is_complete_and_exact():
    assert len(DATASETS) == 10
    assert constants_for("curvefault-a") == NormConstants(-26.48, 52.32, 1500, 4500)
    assert constants_for("STYLE_B") == NormConstants(-23.76, 46.01, 1500, 4500)
    assert constants_for("flatvel-b").data_max == 56.05
    assert all(c.label_min == 1500 and c.label_max == 4500 for c in OPENFWI.values())


def test_unknown_dataset_lists_the_known_ones():
    with pytest.raises(UserError, match="unknown OpenFWI dataset.*curvefault-a"):
        constants_for("marmousi")


def test_seismic_transform_matches_the_ubdiff_definition():
    c = constants_for("flatvel-a")
    lo, hi = -np.log1p(26.95), np.log1p(52.77)
    s = np.array([-26.95, -1.0, 0.0, 3.0, 52.77], dtype=np.float32)
    expected = (np.sign(s) * np.log1p(np.abs(s)) - lo) / (hi - lo) * 2 - 1
    np.testing.assert_allclose(normalize_seismic(s, c), expected, rtol=1e-6, atol=1e-6)
    assert normalize_seismic(s, c)[0] == pytest.approx(-1) and normalize_seismic(s, c)[-1] == pytest.approx(1)
    np.testing.assert_allclose(normalize_velocity(np.array([1500.0, 3000.0, 4500.0]), c), [-1, 0, 1])


def test_round_trips_and_dtypes():
    c = constants_for("curvefault-b")
    rng = np.random.default_rng(0)
    s = (rng.standard_normal((2, 5, 100, 70)) * 8).astype(np.float32)
    v = rng.uniform(1500, 4500, (2, 1, 70, 70)).astype(np.float32)
    ns, nv = normalize_seismic(s, c), normalize_velocity(v, c)
    assert ns.dtype == np.float32 and nv.dtype == np.float32
    np.testing.assert_allclose(denormalize_seismic(ns, c), s, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(denormalize_velocity(nv, c), v, rtol=1e-6)
    np.testing.assert_allclose(denormalize_seismic(normalize_seismic(s.astype(np.float64), c), c), s, rtol=1e-10, atol=1e-10)
    assert normalize_seismic(s.astype(np.float16), c).dtype == np.float32


def test_custom_constants_from_json(tmp_path):
    flat = tmp_path / "mine.json"
    flat.write_text(json.dumps({"data_min": -5, "data_max": 9.5, "label_min": 1400, "label_max": 2600}))
    assert load_constants(flat) == NormConstants(-5, 9.5, 1400, 2600)
    assert resolve_constants(str(flat)) == load_constants(flat)
    ubdiff = tmp_path / "dataset_config.json"
    ubdiff.write_text(json.dumps({"co2": {"data_min": -9.1, "data_max": 16.2, "label_min": 1467, "label_max": 2545, "nbc": 120}, "x": {"data_min": 0, "data_max": 1, "label_min": 0, "label_max": 1}}))
    assert load_constants(ubdiff, "co2").data_max == 16.2
    with pytest.raises(UserError, match="dataset_config.json"):
        load_constants(ubdiff)  # two entries, none chosen


@pytest.mark.parametrize(
    "text, match",
    [
        ("{not json", "not valid JSON"),
        ('{"data_min": -1, "data_max": 1}', "missing label_min, label_max"),
        ('{"data_min": 5, "data_max": 1, "label_min": 0, "label_max": 1}', "must be below"),
        ('{"data_min": "a", "data_max": 1, "label_min": 0, "label_max": 1}', "finite number"),
    ],
)
def test_bad_constants_file_is_one_clear_error(tmp_path, text, match):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(UserError, match=match) as err:
        load_constants(path)
    assert str(err.value).startswith(str(path)) and "\n" not in str(err.value)


def test_runtime_normalization_does_not_import_torch():
    code = "import ubdiff_onnx.runtime.normalization, sys; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
