"""Reading OpenFWI folders: ``ROOT/seismic_data/*.npy`` (N,5,1000,70) + ``ROOT/velocity_map/*.npy`` (N,1,70,70).

Files are paired by name (``dataK.npy``↔``modelK.npy`` for the Vel/Style families, ``seis*.npy``↔
``vel*.npy`` for the Fault families), may hold any number of samples, and may be float16/32/64. They are
memory-mapped: a 54,000-sample dataset is ~75 GB and must not be read into RAM. Opening a folder only
reads the .npy headers; values are checked per sample when read, and all at once by :func:`scan_values`
(``ubdiff-onnx data check``). Every problem is a one-line :class:`UserError` naming the file.

numpy only; the torch ``Dataset`` lives in :mod:`ubdiff_onnx.data.dataset`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Optional

import numpy as np

from ubdiff_onnx.errors import UserError
from ubdiff_onnx.runtime.normalization import NormConstants, normalize_seismic, normalize_velocity

SEISMIC_DIR = "seismic_data"
VELOCITY_DIR = "velocity_map"
SEISMIC_SAMPLE_SHAPE = (5, 1000, 70)
VELOCITY_SAMPLE_SHAPE = (1, 70, 70)
PLAUSIBLE_VELOCITY = (300.0, 8000.0)  # m/s: anything outside is normalised data, km/s, or garbage
NAME_PAIRS = (("data", "model"), ("seis", "vel"))  # seismic prefix → velocity prefix
_FLOAT_DTYPES = (np.float16, np.float32, np.float64)


def velocity_name(seismic_name: str) -> Optional[str]:
    """``data3.npy`` → ``model3.npy``, ``seis2_1_0.npy`` → ``vel2_1_0.npy``; None if neither scheme."""
    for s, v in NAME_PAIRS:
        if seismic_name.startswith(s):
            return v + seismic_name[len(s):]
    return None


def _natural_key(path: Path) -> list:
    """data2 before data10, so sample indices follow the file numbering."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


def _header(path: Path) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise UserError(f"{path}: not a readable .npy array ({exc})") from None


def _check_array(path: Path, arr: np.ndarray, sample_shape: tuple[int, ...]) -> int:
    if arr.dtype.type not in _FLOAT_DTYPES:
        raise UserError(f"{path}: dtype {arr.dtype}, expected float16, float32 or float64")
    if arr.ndim != 1 + len(sample_shape) or tuple(arr.shape[1:]) != sample_shape:
        want = ",".join(map(str, sample_shape))
        raise UserError(f"{path}: shape {tuple(arr.shape)}, expected (N,{want})")
    if arr.shape[0] == 0:
        raise UserError(f"{path}: holds no samples")
    return int(arr.shape[0])


@dataclass(frozen=True)
class FilePair:
    """One seismic file, its velocity file, and how many samples they hold."""

    seismic: Path
    velocity: Path
    samples: int


def scan_folder(root: str | Path) -> list[FilePair]:
    """Find and pair the files of an OpenFWI folder, checking names, shapes and dtypes (headers only)."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root}: not a folder; expected an OpenFWI folder with {SEISMIC_DIR}/ and {VELOCITY_DIR}/")
    sdir, vdir = root / SEISMIC_DIR, root / VELOCITY_DIR
    for d in (sdir, vdir):
        if not d.is_dir():
            raise UserError(f"{d}: missing; an OpenFWI folder has {SEISMIC_DIR}/ and {VELOCITY_DIR}/ sub-folders")
    seis_files = sorted((p for p in sdir.glob("*.npy") if p.is_file()), key=_natural_key)
    vel_files = {p.name: p for p in vdir.glob("*.npy") if p.is_file()}
    if not seis_files:
        raise UserError(f"{sdir}: no .npy files")

    pairs, used = [], set()
    for s in seis_files:
        vname = velocity_name(s.name)
        if vname is None:
            raise UserError(f"{s}: name does not start with 'data' or 'seis', so it cannot be paired with a velocity file")
        if vname not in vel_files:
            raise UserError(f"{s}: unpaired; expected {vdir / vname}")
        used.add(vname)
        n_s = _check_array(s, _header(s), SEISMIC_SAMPLE_SHAPE)
        n_v = _check_array(vel_files[vname], _header(vel_files[vname]), VELOCITY_SAMPLE_SHAPE)
        if n_s != n_v:
            raise UserError(f"{s}: {n_s} samples but {vel_files[vname].name} has {n_v}")
        pairs.append(FilePair(s, vel_files[vname], n_s))
    extra = sorted(set(vel_files) - used)
    if extra:
        raise UserError(f"{vdir / extra[0]}: unpaired; no matching file in {sdir}")
    return pairs


@dataclass
class OpenFWIFolder:
    """Random access to the samples of a validated folder, in file order, memory-mapped.

    Pickles without its arrays (DataLoader workers re-open the maps), so it is cheap to send
    to worker processes.
    """

    root: Path
    pairs: list[FilePair]
    _offsets: np.ndarray = field(init=False, repr=False)
    _maps: dict = field(init=False, repr=False, default_factory=dict)

    def __post_init__(self) -> None:
        self._offsets = np.cumsum([0] + [p.samples for p in self.pairs])

    def __len__(self) -> int:
        return int(self._offsets[-1])

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_maps"] = {}
        return state

    def locate(self, index: int) -> tuple[FilePair, int]:
        """Sample index → (its file pair, row in that file)."""
        if not -len(self) <= index < len(self):
            raise IndexError(f"sample {index} out of range (0..{len(self) - 1})")
        index %= len(self)
        k = int(np.searchsorted(self._offsets, index, side="right") - 1)
        return self.pairs[k], index - int(self._offsets[k])

    def _map(self, path: Path) -> np.ndarray:
        arr = self._maps.get(path)
        if arr is None:
            arr = self._maps[path] = _header(path)
        return arr

    def velocity(self, index: int) -> np.ndarray:
        """(1,70,70) float32 velocity in m/s, checked for NaN/Inf and a plausible range."""
        pair, row = self.locate(index)
        v = np.asarray(self._map(pair.velocity)[row], dtype=np.float32)
        check_velocity(v, pair.velocity, row)
        return v

    def seismic(self, index: int) -> np.ndarray:
        """(5,1000,70) float32 shot gathers in OpenFWI amplitude units, checked for NaN/Inf."""
        pair, row = self.locate(index)
        s = np.asarray(self._map(pair.seismic)[row], dtype=np.float32)
        check_seismic(s, pair.seismic, row)
        return s

    def name(self, index: int) -> str:
        pair, row = self.locate(index)
        return f"{pair.seismic.name}[{row}]"


def open_folder(root: str | Path) -> OpenFWIFolder:
    """Validate the structure of an OpenFWI folder and index its samples."""
    return OpenFWIFolder(Path(root), scan_folder(root))


def check_seismic(s: np.ndarray, path: Path, row: int | str) -> None:
    if not np.isfinite(s).all():
        raise UserError(f"{path}: sample {row} contains NaN or Inf")


def check_velocity(v: np.ndarray, path: Path, row: int | str) -> None:
    if not np.isfinite(v).all():
        raise UserError(f"{path}: sample {row} contains NaN or Inf")
    lo, hi = float(v.min()), float(v.max())
    if lo < PLAUSIBLE_VELOCITY[0] or hi > PLAUSIBLE_VELOCITY[1]:
        raise UserError(
            f"{path}: sample {row} has velocities {lo:g}..{hi:g}, outside the plausible "
            f"{PLAUSIBLE_VELOCITY[0]:g}-{PLAUSIBLE_VELOCITY[1]:g} m/s (normalised, or km/s?)"
        )


# ---------------------------------------------------------------------------------------------
# full scan (data check)


@dataclass
class ValueSummary:
    """Ranges of a folder's raw values, and how much would fall outside [-1, 1] once normalised."""

    files: int = 0
    samples: int = 0
    seismic_min: float = np.inf
    seismic_max: float = -np.inf
    velocity_min: float = np.inf
    velocity_max: float = -np.inf
    seismic_outside: float = 0.0  # fraction of normalised seismic values outside [-1, 1]
    velocity_outside: float = 0.0
    dtypes: set = field(default_factory=set)


def _chunks(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


def scan_values(
    folder: OpenFWIFolder,
    constants: Optional[NormConstants] = None,
    chunk: int = 32,
    on_progress: Optional[Callable[[int], None]] = None,
) -> ValueSummary:
    """Read every sample once: NaN/Inf and velocity-range errors, value ranges, and (with
    ``constants``) the fractions that would fall outside [-1, 1] once normalised."""
    out = ValueSummary(files=len(folder.pairs), samples=len(folder))
    s_out = v_out = 0
    for pair in folder.pairs:
        smap, vmap = folder._map(pair.seismic), folder._map(pair.velocity)
        out.dtypes |= {str(smap.dtype), str(vmap.dtype)}
        for sl in _chunks(pair.samples, chunk):
            s = np.asarray(smap[sl], dtype=np.float32)
            v = np.asarray(vmap[sl], dtype=np.float32)
            for i in range(s.shape[0]):
                check_seismic(s[i], pair.seismic, sl.start + i)
                check_velocity(v[i], pair.velocity, sl.start + i)
            out.seismic_min, out.seismic_max = min(out.seismic_min, float(s.min())), max(out.seismic_max, float(s.max()))
            out.velocity_min, out.velocity_max = min(out.velocity_min, float(v.min())), max(out.velocity_max, float(v.max()))
            if constants is not None:
                s_out += int(np.count_nonzero(np.abs(normalize_seismic(s, constants)) > 1.0))
                v_out += int(np.count_nonzero(np.abs(normalize_velocity(v, constants)) > 1.0))
            if on_progress:
                on_progress(s.shape[0])
    if constants is not None:
        out.seismic_outside = s_out / (len(folder) * int(np.prod(SEISMIC_SAMPLE_SHAPE)))
        out.velocity_outside = v_out / (len(folder) * int(np.prod(VELOCITY_SAMPLE_SHAPE)))
    return out


# ---------------------------------------------------------------------------------------------
# train / validation split and UB-Diff's unbalanced "paired" subset


@dataclass(frozen=True)
class SplitConfig:
    """How samples are divided. UB-Diff trains on all velocity maps but only a few paired seismic.

    ``paired_count`` (if set) wins over ``paired_fraction`` (of the training samples).
    """

    val_fraction: float = 0.1
    paired_fraction: float = 1.0
    paired_count: Optional[int] = None
    seed: int = 0


@dataclass(frozen=True)
class Split:
    train: np.ndarray  # every training sample (velocity maps)
    val: np.ndarray
    paired: np.ndarray  # subset of train whose seismic is used


def make_split(n: int, config: SplitConfig = SplitConfig()) -> Split:
    """Deterministic given (n, config): the same seed always gives the same indices."""
    if not 0.0 <= config.val_fraction < 1.0:
        raise UserError(f"--val-fraction: {config.val_fraction} is not in [0, 1)")
    if not 0.0 < config.paired_fraction <= 1.0:
        raise UserError(f"--paired-fraction: {config.paired_fraction} is not in (0, 1]")
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, n]))
    order = rng.permutation(n)
    n_val = int(round(n * config.val_fraction))
    if n - n_val < 1:
        raise UserError(f"--val-fraction: {config.val_fraction} leaves no training samples out of {n}")
    val, train = np.sort(order[:n_val]), order[n_val:]
    n_paired = config.paired_count if config.paired_count is not None else max(1, int(round(len(train) * config.paired_fraction)))
    if not 1 <= n_paired <= len(train):
        raise UserError(f"--paired-count: {n_paired} is not between 1 and the {len(train)} training samples")
    paired = np.sort(train[:n_paired])  # train is already a random order
    return Split(train=np.sort(train), val=val, paired=paired)
