"""Small fake OpenFWI folders, written on the fly for the loader and CLI tests."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np


def write_folder(
    root: Path,
    names: Sequence[tuple[str, str]] = (("data1.npy", "model1.npy"),),
    counts: Sequence[int] = (3,),
    dtype: str = "float32",
    seed: int = 0,
) -> Path:
    """An OpenFWI-layout folder with random but plausible values (seismic ~N(0,3), 1500–4500 m/s)."""
    rng = np.random.default_rng(seed)
    (root / "seismic_data").mkdir(parents=True, exist_ok=True)
    (root / "velocity_map").mkdir(parents=True, exist_ok=True)
    for (s_name, v_name), n in zip(names, counts):
        np.save(root / "seismic_data" / s_name, (rng.standard_normal((n, 5, 1000, 70)) * 3).astype(dtype))
        np.save(root / "velocity_map" / v_name, rng.uniform(1500, 4500, (n, 1, 70, 70)).astype(dtype))
    return root
