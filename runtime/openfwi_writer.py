"""Write generated samples as an OpenFWI folder that can be made in shards and resumed.

``OUT/seismic_data/dataK.npy`` (n,5,1000,70) and ``OUT/velocity_map/modelK.npy`` (n,1,70,70, m/s),
plus ``OUT/generation.json``: what made the folder (bundle sha256s, sampler, steps, seed, …) and the
sample range of every file (see :mod:`ubdiff_onnx.runtime.shards`). The folder's state is the files
themselves, so any number of processes (shards, Ray actors) can fill it at once without a lock:

- a file is written under a hidden temporary name and renamed when complete (velocity first, then
  seismic right after), so a visible ``dataK.npy`` is always whole; a killed process leaves only its
  temporary files, which the next run of that shard deletes;
- a file pair that is present and has the planned shape and dtype is complete and is skipped;
- ``generation.json`` is identical for every shard of a run; a run whose settings differ from the
  folder's is refused (it would mix two datasets).

numpy + onnxruntime only (no torch); Ray lives in :mod:`ubdiff_onnx.runtime.cluster`.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from ubdiff_onnx.errors import UserError
from ubdiff_onnx.runtime.atomic import atomic_open, make_public
from ubdiff_onnx.runtime.shards import FileSpec

SEISMIC_DIR, VELOCITY_DIR = "seismic_data", "velocity_map"
SEISMIC_SHAPE, VELOCITY_SHAPE = (5, 1000, 70), (1, 70, 70)
GENERATION_JSON = "generation.json"
FORMAT, FORMAT_VERSION = "ubdiff-onnx-generation", 1
DTYPES = {"float32": np.float32, "float16": np.float16}
# The settings that decide every byte of the output: a run that differs in one of them is refused.
IDENTITY = ("bundle.sha256", "sampler", "steps", "eta", "seed", "sampler_options", "num_samples", "per_file", "dtype")


@dataclass(frozen=True)
class Recipe:
    """How each sample is made. ``options`` go to ``BundleSampler.sample`` as keyword arguments (and
    into generation.json); ``batch_size`` is not part of the result's identity."""

    sampler: str
    steps: int
    seed: int
    eta: float = 0.0
    batch_size: int = 4
    options: dict[str, Any] = field(default_factory=dict)


def parse_dtype(name: str) -> np.dtype:
    if name not in DTYPES:
        raise UserError(f"--dtype: expected {' or '.join(DTYPES)}, got {name!r}")
    return np.dtype(DTYPES[name])


def generation_record(manifest, recipe: Recipe, num_samples: int, per_file: int, dtype: np.dtype, files: list[FileSpec]) -> dict:
    """The content of generation.json (the same for every shard of a run: no times, no host names)."""
    dataset = manifest.normalization
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "family": dataset.get("name"),  # what `data check` and `train` use for the normalisation constants
        "normalization": dataset,
        "bundle": {
            "precision": manifest.precision,
            "preset": manifest.data.get("preset"),
            "sha256": {name: comp["sha256"] for name, comp in sorted(manifest.data["components"].items())},
        },
        "sampler": recipe.sampler,
        "steps": recipe.steps,
        "eta": recipe.eta,
        "seed": recipe.seed,
        "sampler_options": dict(sorted(recipe.options.items())),
        "num_samples": num_samples,
        "per_file": per_file,
        "dtype": dtype.name,
        "units": {"velocity": "m/s", "seismic": "OpenFWI amplitude"},
        "files": [
            {"seismic": f"{SEISMIC_DIR}/{f.seismic_name}", "velocity": f"{VELOCITY_DIR}/{f.velocity_name}", "first": f.first, "stop": f.stop}
            for f in files
        ],
    }


def _get(record: dict, dotted: str) -> Any:
    for key in dotted.split("."):
        record = record.get(key) if isinstance(record, dict) else None
    return record


def _describe(value: Any) -> str:
    return json.dumps(value, sort_keys=True) if isinstance(value, dict) else str(value)


def check_output(out: Path, record: dict) -> None:
    """Refuse ``out`` if it cannot take this run (not a folder, another run's generation.json, foreign
    content) without writing anything, so that every refusal before the first sample leaves the folder
    as it was."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: exists and is not a folder")
    if (out / GENERATION_JSON).exists():
        _check_record(out, record)
    elif out.is_dir():
        _refuse_foreign_content(out)


def open_output(out: Path, record: dict) -> None:
    """Create ``out`` with its generation.json, or check that an existing one describes this run."""
    out = Path(out)
    path = out / GENERATION_JSON
    check_output(out, record)
    out.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        _refuse_foreign_content(out)
        _create_once(path, json.dumps(record, indent=1) + "\n")
    _check_record(out, record)  # another shard may have written it first
    for sub in (SEISMIC_DIR, VELOCITY_DIR):
        (out / sub).mkdir(exist_ok=True)


def _check_record(out: Path, record: dict) -> None:
    path = out / GENERATION_JSON
    try:
        have = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not valid JSON ({exc}); was this folder made by `sample --layout openfwi`?") from None
    if not isinstance(have, dict) or have.get("format") != FORMAT:
        raise UserError(f"{path}: not a generation record of `sample --layout openfwi`; use another --out")
    for key in IDENTITY:
        if _get(have, key) != _get(record, key):
            what = "bundle (component sha256s)" if key == "bundle.sha256" else key
            raise UserError(
                f"--out {out}: made with another {what} ({_describe(_get(have, key))}, this run: {_describe(_get(record, key))}); "
                "re-run with the folder's settings to resume, or use a new --out"
            )


def _refuse_foreign_content(out: Path) -> None:
    for entry in out.iterdir():
        if entry.name in (SEISMIC_DIR, VELOCITY_DIR) and entry.is_dir() and not any(entry.iterdir()):
            continue
        if entry.name.startswith(f".{GENERATION_JSON}."):  # another shard is creating generation.json
            continue
        if (out / GENERATION_JSON).exists():  # another shard made the folder meanwhile (its record comes first)
            return
        raise UserError(f"--out {out}: not empty and has no {GENERATION_JSON} ({entry.name}); use an empty or new folder")


def _create_once(path: Path, text: str) -> None:
    """Write ``path`` atomically unless it exists (shards starting together all try; one wins)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        make_public(Path(tmp))
        try:
            os.link(tmp, path)  # fails if it exists: never replaces another shard's record
        except FileExistsError:
            pass
        except OSError:  # a file system without hard links: the record of one run is the same text
            if not path.exists():
                os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


# -- which files are still to do -----------------------------------------------------------------
def _npy_header_bytes(shape: tuple[int, ...], dtype: np.dtype) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape})
    return buf.getvalue()


def file_bytes(spec: FileSpec, dtype: np.dtype) -> int:
    """Bytes of the two .npy files of ``spec`` (headers included)."""
    total = 0
    for shape in ((spec.samples, *SEISMIC_SHAPE), (spec.samples, *VELOCITY_SHAPE)):
        total += len(_npy_header_bytes(shape, dtype)) + int(np.prod(shape)) * dtype.itemsize
    return total


def _is_whole(path: Path, shape: tuple[int, ...], dtype: np.dtype) -> bool:
    if not path.is_file():
        return False
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise UserError(f"{path}: not a readable .npy file ({exc}); delete it to have it made again") from None
    if arr.shape != shape or arr.dtype != dtype:
        raise UserError(f"{path}: shape {arr.shape} {arr.dtype}, this run makes {shape} {dtype.name}; delete it to have it made again")
    return True


def is_complete(out: Path, spec: FileSpec, dtype: np.dtype) -> bool:
    seismic = _is_whole(Path(out) / SEISMIC_DIR / spec.seismic_name, (spec.samples, *SEISMIC_SHAPE), dtype)
    velocity = _is_whole(Path(out) / VELOCITY_DIR / spec.velocity_name, (spec.samples, *VELOCITY_SHAPE), dtype)
    return seismic and velocity


def pending(out: Path, files: Iterable[FileSpec], dtype: np.dtype) -> list[FileSpec]:
    """The files not yet complete, in order."""
    return [f for f in files if not is_complete(out, f, dtype)]


def remove_stale_temporaries(out: Path, files: Iterable[FileSpec]) -> int:
    """Delete temporary files left by a killed run for ``files`` (only this shard's: other shards may
    be writing theirs right now). Returns how many were deleted."""
    n = 0
    for f in files:
        for sub, name in ((SEISMIC_DIR, f.seismic_name), (VELOCITY_DIR, f.velocity_name)):
            for tmp in (Path(out) / sub).glob(f".{name}.*.tmp"):
                tmp.unlink(missing_ok=True)
                n += 1
    return n


def check_free_space(out: Path, need: int) -> int:
    """Refuse to start when the file system of ``out`` has less than ``need`` bytes free; return the free bytes.
    ``out`` need not exist yet (its nearest existing parent is measured): the check comes before
    anything is created, so that a refused run leaves nothing behind."""
    where = Path(out).absolute()
    while not where.exists() and where != where.parent:
        where = where.parent
    free = shutil.disk_usage(where).free
    if free < need:
        raise UserError(f"--out {out}: this run writes {format_bytes(need)} but its file system has {format_bytes(free)} free")
    return free


def format_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError


# -- writing -------------------------------------------------------------------------------------
def write_file(sampler, out: Path, spec: FileSpec, recipe: Recipe, dtype: np.dtype, progress: Callable[[int], None] | None = None) -> FileSpec:
    """Generate the samples of ``spec`` with a ``BundleSampler`` and write its two files atomically.

    Seismic data is streamed to disk batch by batch (500 float32 samples are 700 MB); the velocity
    file is renamed into place first and the seismic file right after it."""
    out = Path(out)
    seismic_path, velocity_path = out / SEISMIC_DIR / spec.seismic_name, out / VELOCITY_DIR / spec.velocity_name
    velocity = np.empty((spec.samples, *VELOCITY_SHAPE), dtype)
    batches = sampler.sample(spec.samples, steps=recipe.steps, sampler=recipe.sampler, seed=recipe.seed, eta=recipe.eta,
                             batch_size=recipe.batch_size, first=spec.first, **recipe.options)
    with atomic_open(seismic_path, "wb", fsync=True) as sfh:
        sfh.write(_npy_header_bytes((spec.samples, *SEISMIC_SHAPE), dtype))
        done = 0
        for batch in batches:
            sfh.write(np.ascontiguousarray(batch.seismic, dtype=dtype).tobytes())
            velocity[batch.indices - spec.first] = batch.velocity
            done += len(batch.indices)
            if progress:
                progress(len(batch.indices))
        if done != spec.samples:
            raise RuntimeError(f"{spec.seismic_name}: sampler gave {done} samples, expected {spec.samples}")
        with atomic_open(velocity_path, "wb", fsync=True) as vfh:
            np.lib.format.write_array(vfh, velocity, allow_pickle=False)
    return spec


def generate(sampler, out: Path, files: Iterable[FileSpec], recipe: Recipe, dtype: np.dtype,
             progress: Callable[[int], None] | None = None, on_file: Callable[[FileSpec], None] | None = None) -> None:
    """Write ``files`` one after the other in this process."""
    for spec in files:
        write_file(sampler, out, spec, recipe, dtype, progress)
        if on_file:
            on_file(spec)
