"""Loading OpenFWI folders: pairing, dtypes, memory-mapping, splits, and one clear error per bad input."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.data._folders import write_folder
from ubdiff_onnx.data.dataset import OpenFWIDataset, ubdiff_datasets
from ubdiff_onnx.data.openfwi import SplitConfig, make_split, open_folder, scan_folder, scan_values, velocity_name
from ubdiff_onnx.errors import UserError
from ubdiff_onnx.runtime.normalization import constants_for, normalize_seismic, normalize_velocity


def test_velocity_names_for_both_schemes():
    assert velocity_name("data12.npy") == "model12.npy"
    assert velocity_name("seis2_1_0.npy") == "vel2_1_0.npy"
    assert velocity_name("shots.npy") is None


def test_vel_family_naming_odd_counts_and_natural_order(tmp_path):
    names = [("data10.npy", "model10.npy"), ("data2.npy", "model2.npy")]
    root = write_folder(tmp_path / "v", names, [5, 3])
    folder = open_folder(root)
    assert [p.seismic.name for p in folder.pairs] == ["data2.npy", "data10.npy"]  # 2 before 10
    assert len(folder) == 8
    pair, row = folder.locate(3)
    assert (pair.seismic.name, row) == ("data10.npy", 0)
    np.testing.assert_array_equal(folder.velocity(3), np.load(root / "velocity_map" / "model10.npy")[0])
    np.testing.assert_array_equal(folder.seismic(7), np.load(root / "seismic_data" / "data10.npy")[4])


def test_fault_family_naming_float16_and_mmap(tmp_path):
    root = write_folder(tmp_path / "f", [("seis2_1_0.npy", "vel2_1_0.npy"), ("seis2_1_1.npy", "vel2_1_1.npy")], [1, 4], dtype="float16")
    folder = open_folder(root)
    assert len(folder) == 5
    s = folder.seismic(2)
    assert s.dtype == np.float32 and s.shape == (5, 1000, 70)
    np.testing.assert_array_equal(s, np.load(root / "seismic_data" / "seis2_1_1.npy")[1].astype(np.float32))
    assert all(isinstance(m, np.memmap) for m in folder._maps.values())  # read lazily, not loaded


def test_folder_pickles_without_its_arrays(fake_folder):
    folder = open_folder(fake_folder)
    folder.seismic(0)
    blob = pickle.dumps(folder)
    assert len(blob) < 10_000
    np.testing.assert_array_equal(pickle.loads(blob).seismic(4), folder.seismic(4))


def test_torch_dataset_returns_normalised_tensors(fake_folder):
    folder = open_folder(fake_folder)
    c = constants_for("flatvel-a")
    ds = OpenFWIDataset(folder, c, indices=[4, 1])
    item = ds[0]
    assert item["index"] == 4 and item["velocity"].dtype == torch.float32
    np.testing.assert_allclose(item["velocity"].numpy(), normalize_velocity(folder.velocity(4), c))
    np.testing.assert_allclose(item["seismic"].numpy(), normalize_seismic(folder.seismic(4), c))
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=2)))
    assert batch["seismic"].shape == (2, 5, 1000, 70) and batch["velocity"].shape == (2, 1, 70, 70)
    assert "seismic" not in OpenFWIDataset(folder, c, seismic=False)[0]


def test_split_is_deterministic_and_paired_is_a_training_subset():
    cfg = SplitConfig(val_fraction=0.2, paired_fraction=0.25, seed=7)
    a, b = make_split(100, cfg), make_split(100, cfg)
    np.testing.assert_array_equal(a.train, b.train)
    np.testing.assert_array_equal(a.paired, b.paired)
    assert len(a.val) == 20 and len(a.train) == 80 and len(a.paired) == 20
    assert set(a.paired) <= set(a.train) and not set(a.val) & set(a.train)
    assert not np.array_equal(make_split(100, SplitConfig(0.2, seed=8)).val, a.val)
    assert len(make_split(100, SplitConfig(0.1, paired_count=5)).paired) == 5


def test_ubdiff_datasets(fake_folder):
    sets, split = ubdiff_datasets(fake_folder, constants_for("curvefault-a"), SplitConfig(val_fraction=0.2, paired_count=2))
    assert len(sets["velocity"]) == 4 and len(sets["paired"]) == 2 and len(sets["val"]) == 1
    assert "seismic" not in sets["velocity"][0] and "seismic" in sets["paired"][0]


@pytest.mark.parametrize("bad", [dict(val_fraction=1.0), dict(paired_fraction=0.0), dict(paired_count=500)])
def test_bad_split_is_a_user_error(bad):
    with pytest.raises(UserError):
        make_split(100, SplitConfig(**bad))


def test_scan_values_reports_ranges(fake_folder):
    summary = scan_values(open_folder(fake_folder), constants_for("flatvel-a"))
    assert summary.samples == 5 and summary.files == 2
    assert 1500 <= summary.velocity_min < summary.velocity_max <= 4500
    assert summary.velocity_outside == 0.0 and summary.seismic_outside == 0.0


# --- bad inputs: each one error naming the file -------------------------------------------------


def _expect(path_part: str, match: str, fn, *args):
    with pytest.raises(UserError, match=match) as err:
        fn(*args)
    message = str(err.value)
    assert path_part in message and "\n" not in message, message


def test_missing_subfolder(fake_folder):
    shutil.rmtree(fake_folder / "velocity_map")
    _expect("velocity_map", "missing", scan_folder, fake_folder)


def test_not_a_folder(tmp_path):
    _expect("nope", "not a folder", scan_folder, tmp_path / "nope")


def test_unpaired_seismic_file(fake_folder):
    (fake_folder / "velocity_map" / "model2.npy").unlink()
    _expect("data2.npy", "unpaired", scan_folder, fake_folder)


def test_unpaired_velocity_file(fake_folder):
    (fake_folder / "seismic_data" / "data1.npy").unlink()
    _expect("model1.npy", "unpaired", scan_folder, fake_folder)


def test_unknown_naming(fake_folder):
    (fake_folder / "seismic_data" / "data1.npy").rename(fake_folder / "seismic_data" / "shots1.npy")
    _expect("shots1.npy", "cannot be paired", scan_folder, fake_folder)


def test_wrong_sample_shape(fake_folder):
    np.save(fake_folder / "seismic_data" / "data1.npy", np.zeros((3, 5, 999, 70), np.float32))
    _expect("data1.npy", r"shape \(3, 5, 999, 70\), expected \(N,5,1000,70\)", scan_folder, fake_folder)


def test_sample_count_mismatch(fake_folder):
    np.save(fake_folder / "velocity_map" / "model1.npy", np.full((2, 1, 70, 70), 2000, np.float32))
    _expect("data1.npy", "3 samples but model1.npy has 2", scan_folder, fake_folder)


def test_integer_dtype(fake_folder):
    np.save(fake_folder / "velocity_map" / "model2.npy", np.full((2, 1, 70, 70), 2000, np.int32))
    _expect("model2.npy", "dtype int32", scan_folder, fake_folder)


def test_corrupt_file(fake_folder):
    (fake_folder / "seismic_data" / "data2.npy").write_bytes(b"not an npy file")
    _expect("data2.npy", "not a readable", scan_folder, fake_folder)


def test_nan_and_inf(fake_folder):
    s = np.load(fake_folder / "seismic_data" / "data2.npy")
    s[1, 2, 3, 4] = np.inf
    np.save(fake_folder / "seismic_data" / "data2.npy", s)
    folder = open_folder(fake_folder)  # structure is fine: values are checked when read
    _expect("data2.npy", "sample 1 contains NaN or Inf", folder.seismic, 4)
    _expect("data2.npy", "sample 1 contains NaN or Inf", scan_values, folder)


@pytest.mark.parametrize("value, hint", [(0.3, "normalised"), (3.0, "km/s"), (20000.0, "outside")])
def test_implausible_velocity(fake_folder, value, hint):
    v = np.load(fake_folder / "velocity_map" / "model1.npy")
    v[2] = value
    np.save(fake_folder / "velocity_map" / "model1.npy", v)
    folder = open_folder(fake_folder)
    _expect("model1.npy", f"sample 2 .*{hint}", folder.velocity, 2)
    _expect("model1.npy", "outside the plausible", scan_values, folder)


def test_empty_seismic_folder(tmp_path):
    (tmp_path / "d" / "seismic_data").mkdir(parents=True)
    (tmp_path / "d" / "velocity_map").mkdir()
    _expect("seismic_data", "no .npy files", scan_folder, Path(tmp_path / "d"))
