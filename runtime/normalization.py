"""OpenFWI normalisation constants and the (de)normalisation both sides of the project share.

numpy only: the Raspberry Pi runtime denormalises decoder outputs with these functions and must not
import torch. Training normalises with the same functions, so the two sides cannot drift apart.

Seismic amplitudes s are compressed with sign(s)·log1p(|s|) and then min-max scaled to [-1, 1] using
the same transform of the dataset's data_min/data_max; velocities (m/s) are min-max scaled to [-1, 1]
with label_min/label_max. These are the transforms of OpenFWI and the original UB-Diff code.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ubdiff_onnx.errors import UserError

__all__ = [
    "NormConstants",
    "OPENFWI",
    "DATASETS",
    "constants_for",
    "load_constants",
    "resolve_constants",
    "log_transform",
    "exp_transform",
    "normalize_seismic",
    "denormalize_seismic",
    "normalize_velocity",
    "denormalize_velocity",
]


@dataclass(frozen=True)
class NormConstants:
    """Raw-unit ranges that map to [-1, 1]: seismic amplitude (data_*) and velocity in m/s (label_*)."""

    data_min: float
    data_max: float
    label_min: float = 1500.0
    label_max: float = 4500.0

    def __post_init__(self) -> None:
        for key, value in asdict(self).items():
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                raise UserError(f"normalisation constant {key}: expected a finite number, got {value!r}")
        if not self.data_min < self.data_max:
            raise UserError(f"normalisation constants: data_min ({self.data_min}) must be below data_max ({self.data_max})")
        if not self.label_min < self.label_max:
            raise UserError(f"normalisation constants: label_min ({self.label_min}) must be below label_max ({self.label_max})")

    def to_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str = "constants") -> "NormConstants":
        """Build from a mapping with the four keys (extra keys, e.g. UB-Diff's ``nbc``, are ignored)."""
        missing = [k for k in ("data_min", "data_max", "label_min", "label_max") if k not in d]
        if missing:
            raise UserError(f"{source}: missing {', '.join(missing)}; expected data_min, data_max, label_min, label_max")
        try:
            return cls(*(d[k] for k in ("data_min", "data_max", "label_min", "label_max")))
        except UserError as exc:
            raise UserError(f"{source}: {exc}") from None


# Official OpenFWI constants (as used by the original UB-Diff `dataset_config.json`).
OPENFWI: dict[str, NormConstants] = {
    "flatvel-a": NormConstants(-26.95, 52.77),
    "flatvel-b": NormConstants(-27.17, 56.05),
    "curvevel-a": NormConstants(-27.11, 55.10),
    "curvevel-b": NormConstants(-29.04, 57.03),
    "flatfault-a": NormConstants(-26.10, 50.86),
    "flatfault-b": NormConstants(-24.86, 50.28),
    "curvefault-a": NormConstants(-26.48, 52.32),
    "curvefault-b": NormConstants(-24.93, 50.98),
    "style-a": NormConstants(-24.96, 48.93),
    "style-b": NormConstants(-23.76, 46.01),
}
DATASETS: tuple[str, ...] = tuple(OPENFWI)


def constants_for(name: str) -> NormConstants:
    """The official constants of an OpenFWI dataset (case-insensitive, ``_`` accepted for ``-``)."""
    key = name.strip().lower().replace("_", "-")
    try:
        return OPENFWI[key]
    except KeyError:
        raise UserError(f"dataset {name!r}: unknown OpenFWI dataset; known: {', '.join(DATASETS)} (or a .json file with custom constants)") from None


def load_constants(path: str | Path, name: str | None = None) -> NormConstants:
    """Custom constants from JSON, for data that is not one of the ten OpenFWI sets.

    Accepts a flat object ``{"data_min":..,"data_max":..,"label_min":..,"label_max":..}`` or a
    UB-Diff style ``dataset_config.json`` keyed by dataset name (then ``name`` picks the entry, or
    the file must hold exactly one).
    """
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: constants file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise UserError(f"{path}: expected a JSON object with data_min, data_max, label_min, label_max")
    if "data_min" not in doc:
        entries = {k: v for k, v in doc.items() if isinstance(v, dict)}
        if name is not None and name in entries:
            doc = entries[name]
        elif name is None and len(entries) == 1:
            doc = next(iter(entries.values()))
        else:
            wanted = f"entry {name!r}" if name else "a single entry"
            raise UserError(f"{path}: expected data_min/data_max/label_min/label_max or {wanted}; found keys {', '.join(doc) or 'none'}")
    return NormConstants.from_dict(doc, source=str(path))


def resolve_constants(dataset: str | Path) -> NormConstants:
    """An OpenFWI dataset name, or a path to a constants JSON file."""
    text = str(dataset)
    if text.lower().endswith(".json") or Path(text).is_file():
        return load_constants(text)
    return constants_for(text)


# ---------------------------------------------------------------------------------------------
# transforms (numpy; float32 in, float32 out; float64 stays float64)


def _float(x: Any) -> np.ndarray:
    a = np.asarray(x)
    return a if a.dtype in (np.float32, np.float64) else a.astype(np.float32)


def log_transform(x: Any) -> np.ndarray:
    """sign(x)·log1p(|x|): compresses the huge direct-wave amplitudes relative to reflections."""
    a = _float(x)
    return np.sign(a) * np.log1p(np.abs(a))


def exp_transform(y: Any) -> np.ndarray:
    """Exact inverse of :func:`log_transform`."""
    a = _float(y)
    return np.sign(a) * np.expm1(np.abs(a))


def _log_bounds(c: NormConstants) -> tuple[float, float]:
    return float(log_transform(np.float64(c.data_min))), float(log_transform(np.float64(c.data_max)))


def normalize_seismic(s: Any, c: NormConstants) -> np.ndarray:
    """Raw seismic amplitudes → [-1, 1] (values beyond data_min/data_max land outside)."""
    lo, hi = _log_bounds(c)
    y = log_transform(s)
    return ((y - lo) * (2.0 / (hi - lo)) - 1.0).astype(y.dtype, copy=False)


def denormalize_seismic(x: Any, c: NormConstants) -> np.ndarray:
    """[-1, 1] → raw seismic amplitudes (OpenFWI units); exact inverse of :func:`normalize_seismic`."""
    lo, hi = _log_bounds(c)
    a = _float(x)
    return exp_transform(((a + 1.0) * ((hi - lo) / 2.0) + lo).astype(a.dtype, copy=False))


def normalize_velocity(v: Any, c: NormConstants) -> np.ndarray:
    """Velocity in m/s → [-1, 1]."""
    a = _float(v)
    return ((a - c.label_min) * (2.0 / (c.label_max - c.label_min)) - 1.0).astype(a.dtype, copy=False)


def denormalize_velocity(x: Any, c: NormConstants) -> np.ndarray:
    """[-1, 1] → velocity in m/s."""
    a = _float(x)
    return ((a + 1.0) * ((c.label_max - c.label_min) / 2.0) + c.label_min).astype(a.dtype, copy=False)
