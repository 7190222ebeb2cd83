"""Is the generator copying its training maps? Nearest-training-map distances, generated vs held-out.

A diffusion model trained on a few hundred maps can learn to reproduce them. The test (as in
Carlini et al. 2023 and the FID-era "nearest neighbour" checks): for every generated velocity map,
the RMS distance (m/s) to its nearest training map, next to the same distance for held-out real
maps that the model never saw. A memorising model puts many generated maps *closer* to the training
set than real unseen maps ever are; a model that generalises gives the same distribution (or a
farther one, when it is blurrier than the data).

A blurry map is closer (in RMS) to its nearest neighbour than a sharp one, so a smooth generator
would look like a copier against raw real maps. The check therefore compares like with like when
it can: held-out real maps *after the autoencoder round trip* (encoder, then the bundle's decoder),
which carry the same blur as anything the decoder produces; the raw held-out row is reported too.

Reported: quantiles of the distributions, the fraction of generated maps closer than the held-out
5th percentile (≈ 5 % when they match; the check fails when it exceeds 5 % by more than three
standard errors of the difference of two such fractions, 9.1 % at 512 vs 512, 14 % at 100 vs 100)
and the ratio of the medians (the check fails below 0.9). The training maps are the run's: its folder's training split
plus the extra generator maps of ``--extra-velocity-maps``, rebuilt from ``run.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ubdiff_onnx.errors import UserError

MEDIAN_RATIO_MIN = 0.9


def closer_fraction_limit(n_generated: int, n_heldout: int) -> float:
    """5 % plus three standard errors: sampling noise alone stays below it (p ≈ 0.001)."""
    return 0.05 + 3.0 * float(np.sqrt(0.05 * 0.95 * (1.0 / n_generated + 1.0 / n_heldout)))


def nearest_distances(queries: np.ndarray, train: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """RMS distance (same units as the maps) from each query map to its nearest training map."""
    q = np.asarray(queries, dtype=np.float64).reshape(len(queries), -1)
    q2 = (q * q).sum(1)
    best = np.full(len(q), np.inf)
    for start in range(0, len(train), chunk):
        t = np.asarray(train[start:start + chunk], dtype=np.float64).reshape(-1, q.shape[1])
        d2 = q2[:, None] + (t * t).sum(1)[None] - 2.0 * q @ t.T
        best = np.minimum(best, d2.min(1))
    return np.sqrt(np.maximum(best, 0.0) / q.shape[1])


def run_training_maps(run_dir: Path) -> tuple[np.ndarray, dict[str, Any]]:
    """The velocity maps (m/s) a training run saw: its split's training maps plus its extra maps."""
    from ubdiff_onnx.data.openfwi import SplitConfig, make_split, open_folder
    from ubdiff_onnx.data.velocity_models import velocity_batch
    from ubdiff_onnx.training.data import stable_seed

    info_path = Path(run_dir) / "run.json"
    try:
        info = json.loads(info_path.read_text())
        folder = open_folder(info["data"])
        split = make_split(len(folder), SplitConfig(**info["split"]))
    except FileNotFoundError as exc:
        raise UserError(f"--train-run {run_dir}: {exc.filename} not found (expected a training run folder with run.json and its data)") from None
    except (KeyError, TypeError, json.JSONDecodeError):
        raise UserError(f"{info_path}: not a training run record (expected data and split)") from None
    maps = [folder.velocity(int(i)) for i in split.train]
    extra = info.get("extra_velocity") or {}
    arrays = [np.stack(maps).reshape(len(maps), 1, 70, 70)]
    if extra.get("count"):
        # the same draw as training.data.extra_velocity_maps, in m/s
        arrays.append(velocity_batch(extra["family"], stable_seed("extra-velocity", extra["seed"]), 0, int(extra["count"])))
    train = np.concatenate(arrays).astype(np.float32)
    return train, {"run": str(run_dir), "data": str(info["data"]), "folder_maps": len(split.train), "extra_maps": int(extra.get("count") or 0)}


def memorisation_report(generated: np.ndarray, heldout: np.ndarray, train: np.ndarray,
                        heldout_roundtrip: np.ndarray | None = None) -> dict[str, Any]:
    """Distances of generated and held-out maps to the training set, and the two checks (against the
    round-tripped held-out maps when given, else the raw ones)."""
    gen = nearest_distances(generated, train)
    raw = nearest_distances(heldout, train)
    rt = nearest_distances(heldout_roundtrip, train) if heldout_roundtrip is not None else None
    real = rt if rt is not None else raw
    qs = (0.05, 0.25, 0.5, 0.75, 0.95)

    def quant(x: np.ndarray) -> dict[str, float]:
        return {f"p{int(q * 100)}": float(np.quantile(x, q)) for q in qs} | {"mean": float(x.mean()), "min": float(x.min())}

    p5 = float(np.quantile(real, 0.05))
    closer = float((gen < p5).mean())
    ratio = float(np.median(gen) / max(np.median(real), 1e-12))
    limit = closer_fraction_limit(len(gen), len(real))
    return {
        "train_maps": int(len(train)),
        "generated": quant(gen), "heldout": quant(raw), "heldout_roundtrip": quant(rt) if rt is not None else None,
        "n_generated": int(len(gen)), "n_heldout": int(len(raw)), "n_heldout_roundtrip": int(len(rt)) if rt is not None else 0,
        "compared_with": "heldout_roundtrip" if rt is not None else "heldout",
        "generated_closer_than_heldout_p5": closer,
        "closer_fraction_limit": limit,
        "median_ratio_generated_to_heldout": ratio,
        "passes": bool(closer <= limit and ratio >= MEDIAN_RATIO_MIN),
        "_distances": {"generated": gen, "heldout": raw, "heldout_roundtrip": rt},
    }
