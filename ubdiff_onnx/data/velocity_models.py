"""Random velocity maps in the style of the OpenFWI families (70×70 cells of 10 m, 1500–4500 m/s).

- ``flatvel``: flat layers.  ``curvevel``: layers folded by a sine.  ``flatfault`` / ``curvefault``:
  the same, cut by a dipping fault that shifts one side up or down.
- ``-a``: 2–5 layers (3–5 when faulted, so the fault is visible), velocity increasing with depth.
  ``-b``: more layers, velocities in random order, stronger folding, up to two faults.

The top layer (the one the sources sit in, rows 0–4 always) is capped per family: the near-source
amplitude grows with that velocity, and the caps keep the simulated amplitudes inside each family's
official OpenFWI data_min/data_max (measured: top 3000 m/s → max ≈ 49.7, 4500 m/s → ≈ 54).

Every map is a pure function of its numpy Generator, so a sample depends on (seed, index) only.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from ubdiff_onnx.errors import UserError

N = 70  # grid cells per side
V_MIN, V_MAX = 1500.0, 4500.0
TOP_ROWS = 5  # the first interface is never shallower than this (sources/receivers are at row 1)


@dataclass(frozen=True)
class Family:
    """Recipe of one velocity family."""

    name: str
    curved: bool
    faults: tuple[int, int]  # min, max number of faults
    layers: tuple[int, int]  # min, max number of layers
    increasing: bool  # velocities increase with depth (version A)
    top_max: float  # cap on the top layer's velocity, m/s (see module docstring)
    fold_amplitude: tuple[float, float] = (2.0, 8.0)  # rows
    min_contrast: float = 150.0  # m/s between adjacent layers

    @property
    def naming(self) -> tuple[str, str]:
        """OpenFWI file prefixes (seismic, velocity) of this family."""
        return ("seis", "vel") if self.faults[1] > 0 else ("data", "model")


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family("flatvel-a", curved=False, faults=(0, 0), layers=(2, 5), increasing=True, top_max=3750),
        Family("flatvel-b", curved=False, faults=(0, 0), layers=(4, 8), increasing=False, top_max=4250),
        Family("curvevel-a", curved=True, faults=(0, 0), layers=(2, 5), increasing=True, top_max=4000),
        Family("curvevel-b", curved=True, faults=(0, 0), layers=(4, 8), increasing=False, top_max=4250, fold_amplitude=(4.0, 12.0)),
        Family("flatfault-a", curved=False, faults=(1, 1), layers=(3, 5), increasing=True, top_max=3000),
        Family("flatfault-b", curved=False, faults=(1, 2), layers=(4, 8), increasing=False, top_max=2750),
        Family("curvefault-a", curved=True, faults=(1, 1), layers=(3, 5), increasing=True, top_max=3500),
        Family("curvefault-b", curved=True, faults=(1, 2), layers=(4, 8), increasing=False, top_max=2750, fold_amplitude=(4.0, 12.0)),
    )
}


def family(name: str) -> Family:
    try:
        return FAMILIES[name.strip().lower()]
    except KeyError:
        raise UserError(f"--family {name!r}: unknown; choose one of {', '.join(FAMILIES)}") from None


def sample_rng(family_name: str, seed: int, index: int) -> np.random.Generator:
    """The generator of one sample: independent of worker count and chunking."""
    return np.random.default_rng(np.random.SeedSequence([seed, index, zlib.crc32(family_name.encode())]))


def _velocities(fam: Family, n: int, rng: np.random.Generator) -> np.ndarray:
    for _ in range(100):  # rejection keeps the recipe simple; it almost never loops
        v = rng.uniform(V_MIN, V_MAX, n)
        if fam.increasing:
            v.sort()
        else:
            v[0] = rng.uniform(V_MIN, fam.top_max)
        if v[0] <= fam.top_max and np.all(np.abs(np.diff(v)) >= fam.min_contrast):
            return v
    return np.linspace(V_MIN, fam.top_max, n) if fam.increasing else v.clip(max=fam.top_max)


def _interfaces(fam: Family, n_layers: int, rng: np.random.Generator, x: np.ndarray) -> np.ndarray:
    """Depth (rows, float) of each interface at each column: (n_layers-1, N)."""
    deepest = N + 15 if fam.faults[1] else N - 3  # faults can lift deeper layers into view
    for _ in range(100):
        base = np.sort(rng.uniform(TOP_ROWS + 2, deepest, n_layers - 1))
        if np.all(np.diff(base) >= 4):
            break
    depth = np.repeat(base[:, None], N, axis=1)
    if fam.curved:
        amp = rng.uniform(*fam.fold_amplitude)
        wavelength = rng.uniform(40, 140)
        phase = rng.uniform(0, 2 * np.pi)
        fold = amp * np.sin(2 * np.pi * x / wavelength + phase)
        scale = rng.uniform(0.6, 1.2, (n_layers - 1, 1)) if not fam.increasing else 1.0
        depth = depth + scale * fold
    return depth


def _fault_shift(rng: np.random.Generator, zz: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """Vertical throw (rows) of one dipping fault at every cell: 0 on the fixed side."""
    x0 = rng.uniform(15, 55)  # where the fault crosses mid-depth
    dip = np.deg2rad(rng.uniform(50, 80)) * rng.choice([-1, 1])
    throw = rng.uniform(5, 15) * rng.choice([-1, 1])
    fault_x = x0 + (zz - N / 2) / np.tan(dip)
    return np.where(xx > fault_x, throw, 0.0)


def make_velocity(fam: Family, rng: np.random.Generator) -> np.ndarray:
    """One (70, 70) float32 velocity map in m/s (row = depth, column = x)."""
    n_layers = int(rng.integers(fam.layers[0], fam.layers[1] + 1))
    vel = _velocities(fam, n_layers, rng)
    x = np.arange(N, dtype=np.float64)
    depth = _interfaces(fam, n_layers, rng, x)
    zz, xx = np.meshgrid(np.arange(N, dtype=np.float64), x, indexing="ij")
    z_eff = zz.copy()
    for _ in range(int(rng.integers(fam.faults[0], fam.faults[1] + 1))):
        z_eff -= _fault_shift(rng, zz, xx)  # positive throw: the moved side's layers go down
    # layer index = number of interfaces above the (fault-shifted) depth of each cell
    layer = (depth[:, None, :] <= z_eff[None]).sum(axis=0)
    layer[:TOP_ROWS] = 0
    return vel[layer].astype(np.float32)


def velocity_batch(family_name: str, seed: int, start: int, count: int) -> np.ndarray:
    """Samples ``start .. start+count-1`` of a family: (count, 1, 70, 70) float32 m/s."""
    fam = family(family_name)
    return np.stack([make_velocity(fam, sample_rng(fam.name, seed, i)) for i in range(start, start + count)])[:, None]
