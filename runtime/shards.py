"""Split a generation run into OpenFWI files and the files into shards.

Sample ``i`` depends only on (seed, i) (see :mod:`ubdiff_onnx.runtime.sampler`), so a run of N
samples is a fixed list of files — file K (1-based, ``dataK.npy`` + ``modelK.npy``) holds samples
``(K-1)·per_file … min(K·per_file, N) - 1`` — and any subset of those files can be made anywhere,
in any order. Shard K of N takes every N-th file starting with file K (round robin, so the shards
differ by at most one file); the N shards together are exactly the files of one run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ubdiff_onnx.errors import UserError

SEISMIC_PREFIX, VELOCITY_PREFIX = "data", "model"  # OpenFWI's Vel/Style naming: dataK.npy ↔ modelK.npy


@dataclass(frozen=True)
class FileSpec:
    """One planned file pair: its number K and the sample indices ``first … stop - 1`` it holds."""

    number: int
    first: int
    stop: int

    @property
    def samples(self) -> int:
        return self.stop - self.first

    @property
    def seismic_name(self) -> str:
        return f"{SEISMIC_PREFIX}{self.number}.npy"

    @property
    def velocity_name(self) -> str:
        return f"{VELOCITY_PREFIX}{self.number}.npy"


def plan_files(num_samples: int, per_file: int) -> list[FileSpec]:
    """Every file of a run of ``num_samples`` samples, ``per_file`` a file (the last may be shorter)."""
    if num_samples < 1:
        raise UserError(f"--num-samples: expected >= 1, got {num_samples}")
    if per_file < 1:
        raise UserError(f"--per-file: expected >= 1, got {per_file}")
    return [FileSpec(k + 1, start, min(start + per_file, num_samples)) for k, start in enumerate(range(0, num_samples, per_file))]


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` with 1 <= K <= N → (K, N)."""
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not m:
        raise UserError(f"--shard: expected K/N such as 1/4 (K = 1..N), got {text!r}")
    k, n = int(m.group(1)), int(m.group(2))
    if n < 1 or not 1 <= k <= n:
        raise UserError(f"--shard: K must be between 1 and N, got {k}/{n}")
    return k, n


def shard_files(files: list[FileSpec], shard: tuple[int, int] | None) -> list[FileSpec]:
    """The files shard K/N writes: files K, K+N, K+2N, … (all of them when ``shard`` is None)."""
    if shard is None:
        return list(files)
    k, n = shard
    return [f for j, f in enumerate(files) if j % n == k - 1]
