"""torch ``Dataset`` over an OpenFWI folder, returning normalised tensors.

Items are dicts so that velocity-only and paired datasets share one collate path:
``{"index": int, "velocity": (1,70,70)}`` plus ``"seismic": (5,1000,70)`` when seismic is requested.
Values are in [-1, 1] (normalised with the dataset's OpenFWI constants).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ubdiff_onnx.data.openfwi import OpenFWIFolder, Split, SplitConfig, make_split, open_folder
from ubdiff_onnx.runtime.normalization import NormConstants, normalize_seismic, normalize_velocity


class OpenFWIDataset(Dataset):
    """A subset (``indices``) of a folder's samples; ``seismic=False`` reads velocity maps only."""

    def __init__(
        self,
        folder: OpenFWIFolder,
        constants: NormConstants,
        indices: Optional[Sequence[int]] = None,
        seismic: bool = True,
    ) -> None:
        self.folder = folder
        self.constants = constants
        self.indices = np.arange(len(folder)) if indices is None else np.asarray(indices, dtype=np.int64)
        self.with_seismic = seismic

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int) -> dict:
        i = int(self.indices[k])
        item = {"index": i, "velocity": torch.from_numpy(normalize_velocity(self.folder.velocity(i), self.constants))}
        if self.with_seismic:
            item["seismic"] = torch.from_numpy(normalize_seismic(self.folder.seismic(i), self.constants))
        return item


def ubdiff_datasets(
    root: str | Path, constants: NormConstants, split: SplitConfig = SplitConfig()
) -> tuple[dict[str, OpenFWIDataset], Split]:
    """UB-Diff's three sets: ``velocity`` (all training maps), ``paired`` (training maps with seismic),
    ``val`` (held-out, with seismic). Returns them with the index split used."""
    folder = open_folder(root)
    s = make_split(len(folder), split)
    sets = {
        "velocity": OpenFWIDataset(folder, constants, s.train, seismic=False),
        "paired": OpenFWIDataset(folder, constants, s.paired, seismic=True),
        "val": OpenFWIDataset(folder, constants, s.val, seismic=True),
    }
    return sets, s
