"""``ubdiff-onnx data synth``: an OpenFWI-format dataset made by real wave simulation.

Velocity maps come from :mod:`~ubdiff_onnx.data.velocity_models`, seismic from
:func:`~ubdiff_onnx.data.forward.forward_model` (OpenFWI's scheme). Velocity map i depends only on
(family, seed, i) and work is split into fixed chunks, so the files are bit-identical for any number
of workers.

Workers are separate processes with ONE torch thread each: on a 2-core machine two threads per
process make the stencil loops fight for cores and throughput collapses. Output is written into a
temporary folder next to OUT_DIR and renamed at the end, so OUT_DIR never holds a half-written
dataset, whether a worker fails or the user presses Ctrl-C.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import platform
import shutil
import signal
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator, Optional

import numpy as np

from ubdiff_onnx.data.forward import OPENFWI_SURVEY
from ubdiff_onnx.data.openfwi import SEISMIC_DIR, SEISMIC_SAMPLE_SHAPE, VELOCITY_DIR, VELOCITY_SAMPLE_SHAPE
from ubdiff_onnx.data.velocity_models import family, velocity_batch
from ubdiff_onnx.errors import UserError

GENERATOR_VERSION = 1  # bump when the recipe changes, so cached datasets are regenerated
METADATA = "synth.json"


@dataclass(frozen=True)
class SynthConfig:
    family: str = "curvefault-a"
    samples: int = 256
    seed: int = 0
    samples_per_file: int = 500  # OpenFWI's usual file size
    chunk: int = 8  # samples per worker task

    def validate(self) -> None:
        family(self.family)
        if self.samples < 1:
            raise UserError(f"--samples: {self.samples}; expected at least 1")
        if self.samples_per_file < 1:
            raise UserError(f"--samples-per-file: {self.samples_per_file}; expected at least 1")
        if self.chunk < 1:
            raise UserError(f"chunk: {self.chunk}; expected at least 1")


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for dist in ("ubdiff-onnx", "torch", "deepwave", "numpy"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "not installed"
    return out


def file_layout(cfg: SynthConfig) -> list[tuple[str, str, int, int]]:
    """(seismic relpath, velocity relpath, first sample, count) for each file pair."""
    s_prefix, v_prefix = family(cfg.family).naming
    out = []
    for k, start in enumerate(range(0, cfg.samples, cfg.samples_per_file), start=1):
        count = min(cfg.samples_per_file, cfg.samples - start)
        out.append((f"{SEISMIC_DIR}/{s_prefix}{k}.npy", f"{VELOCITY_DIR}/{v_prefix}{k}.npy", start, count))
    return out


# ---------------------------------------------------------------------------------------------
# work done in the workers


def _init_worker() -> None:
    import torch

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and terminates us
    torch.set_num_threads(1)


def simulate_chunk(task: tuple[str, int, int, int]) -> tuple[int, np.ndarray, np.ndarray]:
    """(family, seed, start, count) → (start, velocity (n,1,70,70), seismic (n,5,1000,70))."""
    from ubdiff_onnx.data.forward import forward_model

    fam, seed, start, count = task
    vel = velocity_batch(fam, seed, start, count)
    return start, vel, forward_model(vel, OPENFWI_SURVEY)


def _results(tasks: list, workers: int) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    if workers <= 1:  # in this process (forward_model runs on one torch thread by default)
        for t in tasks:
            yield simulate_chunk(t)
        return
    # spawn, not fork: the parent may already run torch's thread pools, which do not survive fork
    with mp.get_context("spawn").Pool(workers, initializer=_init_worker) as pool:
        yield from pool.imap_unordered(simulate_chunk, tasks)  # pool.__exit__ terminates on error


# ---------------------------------------------------------------------------------------------
# writing


class _Writer:
    """Scatters chunks into pre-allocated .npy files (memory-mapped, so RAM stays small)."""

    def __init__(self, root: Path, cfg: SynthConfig) -> None:
        (root / SEISMIC_DIR).mkdir()
        (root / VELOCITY_DIR).mkdir()
        self.files = []
        for s_rel, v_rel, start, count in file_layout(cfg):
            s = np.lib.format.open_memmap(root / s_rel, mode="w+", dtype=np.float32, shape=(count, *SEISMIC_SAMPLE_SHAPE))
            v = np.lib.format.open_memmap(root / v_rel, mode="w+", dtype=np.float32, shape=(count, *VELOCITY_SAMPLE_SHAPE))
            self.files.append((start, count, s, v))

    def put(self, start: int, vel: np.ndarray, seis: np.ndarray) -> None:
        end = start + len(vel)
        for f_start, f_count, s, v in self.files:
            lo, hi = max(start, f_start), min(end, f_start + f_count)
            if lo < hi:
                s[lo - f_start : hi - f_start] = seis[lo - start : hi - start]
                v[lo - f_start : hi - f_start] = vel[lo - start : hi - start]

    def close(self) -> None:
        for _, _, s, v in self.files:
            s.flush()
            v.flush()
        self.files = []


def _check_destination(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"{out_dir}: exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise UserError(f"{out_dir}: exists and is not empty; pass --overwrite to replace it")


def _sibling(path: Path, tag: str) -> Path:
    """A fresh hidden name next to ``path`` (same filesystem, so renames are atomic)."""
    return path.parent / f".{path.name}.{tag}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def publish(tmp: Path, out_dir: Path, overwrite: bool) -> None:
    """Move a finished ``tmp`` folder to ``out_dir`` in one rename (replacing it if allowed)."""
    _check_destination(out_dir, overwrite)
    old = None
    if out_dir.is_dir():
        if any(out_dir.iterdir()):
            old = _sibling(out_dir, "old")
            os.replace(out_dir, old)
        else:
            out_dir.rmdir()
    os.replace(tmp, out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _progress(enabled: bool):
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("samples"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=not enabled,
        transient=False,
    )


def generate_into(folder: Path, cfg: SynthConfig, workers: int, progress: bool = True) -> None:
    """Fill an empty ``folder`` with the dataset (no atomicity here; see :func:`synthesize`)."""
    tasks = [(cfg.family, cfg.seed, s, min(cfg.chunk, cfg.samples - s)) for s in range(0, cfg.samples, cfg.chunk)]
    workers = max(1, min(workers, len(tasks)))
    writer = _Writer(folder, cfg)
    results = _results(tasks, workers)
    try:
        with _progress(progress) as bar:
            task = bar.add_task(f"{cfg.family} ({workers} worker{'s' if workers > 1 else ''})", total=cfg.samples)
            for start, vel, seis in results:
                writer.put(start, vel, seis)
                bar.advance(task, len(vel))
    finally:
        results.close()  # stops (terminates) the worker pool at once on error or Ctrl-C
        writer.close()
    meta = {
        "format": "openfwi",
        "generator": "ubdiff-onnx data synth",
        "generator_version": GENERATOR_VERSION,
        **asdict(cfg),
        "files": [{"seismic": s, "velocity": v, "samples": n} for s, v, _, n in file_layout(cfg)],
        "survey": asdict(OPENFWI_SURVEY),
        "versions": _versions(),
    }
    (folder / METADATA).write_text(json.dumps(meta, indent=2) + "\n")


def synthesize(
    out_dir: str | Path,
    family_name: str = "curvefault-a",
    samples: int = 256,
    seed: int = 0,
    workers: Optional[int] = None,
    *,
    samples_per_file: int = 500,
    chunk: int = 8,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Generate ``samples`` samples of a family into ``out_dir`` (OpenFWI layout + ``synth.json``).

    ``workers`` defaults to the number of CPU cores. Nothing is left in ``out_dir`` (or next to it)
    if anything fails or is interrupted.
    """
    cfg = SynthConfig(family(family_name).name, samples, seed, samples_per_file, chunk)
    cfg.validate()
    out_dir = Path(out_dir)
    _check_destination(out_dir, overwrite)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = _sibling(out_dir, "tmp")
    tmp.mkdir()  # honours the umask, unlike mkdtemp's 0700
    try:
        generate_into(tmp, cfg, workers if workers is not None else (os.cpu_count() or 1), progress)
        publish(tmp, out_dir, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def read_metadata(folder: str | Path) -> Optional[dict]:
    """The ``synth.json`` of a generated folder, else the ``generation.json`` of one written by
    ``sample --layout openfwi`` (its ``family`` is the bundle's dataset), or None for other data."""
    from ubdiff_onnx.runtime.openfwi_writer import GENERATION_JSON

    path = Path(folder) / METADATA
    if not path.is_file():
        path = Path(folder) / GENERATION_JSON
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not valid JSON ({exc})") from None
