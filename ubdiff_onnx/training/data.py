"""Training data: the run's split of an OpenFWI folder, as batches that are a pure function of
(seed, phase, epoch) so that a resumed run sees exactly the batches it would have seen.

Small sets (the embedded 256 samples, tests) are normalised once into memory; sets larger than
``cache_bytes`` are streamed from the memory-mapped files by DataLoader workers.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ubdiff_onnx.data.dataset import OpenFWIDataset
from ubdiff_onnx.data.openfwi import OpenFWIFolder, SEISMIC_SAMPLE_SHAPE, Split, SplitConfig, VELOCITY_SAMPLE_SHAPE, make_split, open_folder
from ubdiff_onnx.errors import UserError
from ubdiff_onnx.runtime.normalization import NormConstants

DEFAULT_CACHE_BYTES = 4 << 30


def stable_seed(*parts: object) -> int:
    """A 63-bit seed from any printable parts (Python's hash() is salted per process)."""
    text = "\x1f".join(map(str, parts)).encode()
    return (zlib.crc32(text) << 31 | zlib.crc32(text[::-1])) & ((1 << 63) - 1)


class TensorDictDataset(Dataset):
    """In-memory dict of equally long tensors; item i is {key: tensor[i]}."""

    def __init__(self, tensors: dict[str, torch.Tensor]) -> None:
        lengths = {len(t) for t in tensors.values()}
        if len(lengths) != 1:
            raise ValueError("tensors of different lengths")
        self.tensors = tensors

    def __len__(self) -> int:
        return len(next(iter(self.tensors.values())))

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {k: v[i] for k, v in self.tensors.items()}


@dataclass
class RunData:
    """The folder, its constants and the run's split (identical for every stage of a run)."""

    folder: OpenFWIFolder
    constants: NormConstants
    split: Split
    cache_bytes: int = DEFAULT_CACHE_BYTES
    workers: int = 0
    extra_velocity: np.ndarray | None = None
    """Normalised generator maps (N,1,70,70) added to ``train`` (velocity only): UB-Diff's unbalanced
    setting taken further, since maps cost ~0.2 ms and pairs ~150 ms (see :func:`extra_velocity_maps`)."""
    _cache: dict = field(default_factory=dict, repr=False)

    def dataset(self, which: str, seismic: bool) -> Dataset:
        """``train`` (all training maps), ``paired`` (training maps with seismic) or ``val``;
        built once per run (later stages reuse the in-memory copy)."""
        key = (which, seismic)
        if key not in self._cache:
            self._cache[key] = self._build(which, seismic)
        return self._cache[key]

    def _build(self, which: str, seismic: bool) -> Dataset:
        indices = {"train": self.split.train, "paired": self.split.paired, "val": self.split.val}[which]
        ds = OpenFWIDataset(self.folder, self.constants, indices, seismic=seismic)
        per_sample = 4 * (int(np.prod(VELOCITY_SAMPLE_SHAPE)) + (int(np.prod(SEISMIC_SAMPLE_SHAPE)) if seismic else 0))
        base: Dataset = ds if len(ds) * per_sample > self.cache_bytes else TensorDictDataset(_materialise(ds, seismic))
        if which == "train" and not seismic and self.extra_velocity is not None and len(self.extra_velocity):
            return WithExtraMaps(base, torch.from_numpy(self.extra_velocity))
        return base


class WithExtraMaps(Dataset):
    """The folder's training maps followed by extra generator maps. ``epoch_size`` stays the folder's
    count: an epoch (and so a preset's schedule) keeps its length, each one sees other extra maps."""

    def __init__(self, base: Dataset, extra: torch.Tensor) -> None:
        self.base, self.extra = base, extra
        self.epoch_size = len(base)

    def __len__(self) -> int:
        return len(self.base) + len(self.extra)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        if i < len(self.base):
            return {"velocity": self.base[i]["velocity"]}
        return {"velocity": self.extra[i - len(self.base)]}


def extra_velocity_maps(family: str, count: int, seed: int, constants: NormConstants) -> np.ndarray:
    """``count`` normalised maps of the generator family, from a seed derived from the run's (so never
    the seed of a folder ``data synth`` made: those are small integers, this is a 63-bit hash)."""
    from ubdiff_onnx.data.velocity_models import velocity_batch
    from ubdiff_onnx.runtime.normalization import normalize_velocity

    maps = velocity_batch(family, stable_seed("extra-velocity", seed), 0, count)
    return normalize_velocity(maps, constants).astype(np.float32)


def _materialise(ds: OpenFWIDataset, seismic: bool) -> dict[str, torch.Tensor]:
    vel = torch.empty((len(ds), *VELOCITY_SAMPLE_SHAPE))
    seis = torch.empty((len(ds), *SEISMIC_SAMPLE_SHAPE)) if seismic else None
    for i in range(len(ds)):
        item = ds[i]
        vel[i] = item["velocity"]
        if seis is not None:
            seis[i] = item["seismic"]
    return {"velocity": vel} if seis is None else {"velocity": vel, "seismic": seis}


def open_run_data(root: Path, constants: NormConstants, split: SplitConfig, workers: int = 0,
                  cache_bytes: int = DEFAULT_CACHE_BYTES) -> RunData:
    folder = open_folder(root)
    s = make_split(len(folder), split)
    if len(s.val) == 0:
        raise UserError(f"{root}: {len(folder)} samples leave no validation samples at --val-fraction {split.val_fraction}; use more data")
    return RunData(folder, constants, s, cache_bytes, workers)


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int, steps: int | None, epoch_size: int | None = None) -> list[torch.Tensor]:
    """Global batches of one epoch: a fresh permutation per pass, last short batch dropped
    (BatchNorm cannot train on a batch of 1). ``steps`` batches are drawn, cycling passes if needed;
    without ``steps`` an epoch is ``epoch_size`` samples' worth (default: all ``n``)."""
    bs = min(batch_size, n)
    per_pass = n // bs
    want = steps if steps is not None else max(1, min(n, epoch_size or n) // bs)
    out: list[torch.Tensor] = []
    rep = 0
    while len(out) < want:
        g = torch.Generator().manual_seed(stable_seed(seed, epoch, rep))
        perm = torch.randperm(n, generator=g)
        out.extend(perm[i * bs:(i + 1) * bs] for i in range(per_pass))
        rep += 1
    return out[:want]


def shard(batch: torch.Tensor, rank: int, world: int) -> torch.Tensor:
    """This rank's part of a global batch (strided, so every rank gets ~B/world samples)."""
    return batch[rank::world] if world > 1 else batch


def iterate(dataset: Dataset, batches: Sequence[torch.Tensor], workers: int = 0) -> Iterator[dict[str, torch.Tensor]]:
    """Yield collated batches for the given index lists (in order)."""
    if not batches:
        return iter(())
    if isinstance(dataset, TensorDictDataset):
        return ({k: v[idx] for k, v in dataset.tensors.items()} for idx in batches)
    loader = DataLoader(dataset, batch_sampler=[b.tolist() for b in batches], num_workers=workers,
                        persistent_workers=False, pin_memory=torch.cuda.is_available())
    return ({k: v for k, v in b.items() if k != "index"} for b in loader)


def full_batches(n: int, batch_size: int, rank: int = 0, world: int = 1) -> list[torch.Tensor]:
    """Every sample exactly once in order (validation), sharded over ranks."""
    idx = torch.arange(n)[rank::world]
    return [idx[i:i + batch_size] for i in range(0, len(idx), batch_size)]
