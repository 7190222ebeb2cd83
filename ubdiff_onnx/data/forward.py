"""Forward modelling: velocity map (m/s) → seismic shot gathers, the way OpenFWI made its data.

OpenFWI solved the constant-density acoustic wave equation with 2nd-order-in-time, 4th-order-in-space
finite differences on the 70×70 grid (dx 10 m, dt 1 ms, 1000 steps), a 15 Hz Ricker whose discrete
form peaks at sample 73, 5 sources and 70 receivers at 10 m depth, and a wide absorbing sponge. We run
the same scheme with deepwave (compiled, ~0.12 s a sample on one core) and line its output up with
OpenFWI's: deepwave's source sign convention is the opposite one and it records one step later, so
we negate and run one extra step. ``tests/data/test_forward.py`` checks it against an independent
implementation of OpenFWI's update (0.06 % RMS over the first 0.4 s) and against the exact 2-D
solution (peak time within 1 sample, amplitude within 0.1 %; OpenFWI's traces lead the exact
solution by one sample because it injects w[n] into p[n]; we keep OpenFWI's convention).
Deepwave absorbs with a 20-cell PML instead of OpenFWI's 120-cell damping sponge; the two differ
only in what the boundaries send back late in the record (measured: 0.08 % RMS for a 1500 m/s top
layer, 4 % for 4500 m/s, nearly all after 0.8 s).

Also meant for the physics-consistency metric: give it decoded velocities, compare with decoded
seismic. torch in → torch out (differentiable); numpy in → numpy out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional, Union

import numpy as np

from ubdiff_onnx.errors import UserError

if TYPE_CHECKING:
    import torch

Array = Union[np.ndarray, "torch.Tensor"]


@dataclass(frozen=True)
class Survey:
    """Acquisition and solver settings. The defaults are OpenFWI's (all ten 70×70 datasets)."""

    nz: int = 70
    nx: int = 70
    dx: float = 10.0  # m
    dt: float = 1e-3  # s
    nt: int = 1000
    freq: float = 15.0  # Hz, Ricker peak frequency
    peak_sample: int = 73  # OpenFWI's discrete Ricker (147 taps) peaks here
    source_columns: tuple[int, ...] = (0, 17, 34, 52, 69)
    receiver_columns: tuple[int, ...] = tuple(range(70))
    depth_row: int = 1  # sources and receivers at 10 m depth
    accuracy: int = 4
    pml_width: int = 20
    pml_freq: float = 15.0
    courant_number: float = 0.65

    @property
    def n_sources(self) -> int:
        return len(self.source_columns)

    @property
    def n_receivers(self) -> int:
        return len(self.receiver_columns)

    @property
    def seismic_shape(self) -> tuple[int, int, int]:
        return (self.n_sources, self.nt, self.n_receivers)


OPENFWI_SURVEY = Survey()


def _as_batch(velocity: "torch.Tensor", survey: Survey) -> "torch.Tensor":
    """(nz,nx), (N,nz,nx) or (N,1,nz,nx) → (N,nz,nx) float32."""
    v = velocity
    if v.dim() == 2:
        v = v[None]
    elif v.dim() == 4 and v.shape[1] == 1:
        v = v[:, 0]
    elif v.dim() != 3:
        raise UserError(f"velocity: expected shape (N,1,{survey.nz},{survey.nx}) or ({survey.nz},{survey.nx}), got {tuple(velocity.shape)}")
    if tuple(v.shape[-2:]) != (survey.nz, survey.nx):
        raise UserError(f"velocity: expected a {survey.nz}×{survey.nx} map, got {tuple(velocity.shape)}")
    return v.float()


def _check_velocity(v: "torch.Tensor") -> None:
    import torch

    if not bool(torch.isfinite(v).all()):
        raise UserError("velocity: contains NaN or Inf")
    lo, hi = float(v.min()), float(v.max())
    if lo <= 0:
        raise UserError(f"velocity: must be positive m/s, minimum is {lo:g}")
    if hi < 100:  # normalised maps are in [-1, 1]; a frequent mix-up
        raise UserError(f"velocity: maximum is {hi:g}; expected m/s (normalised or km/s?)")


def forward_model(
    velocity: Array, survey: Survey = OPENFWI_SURVEY, batch_size: int = 16, threads: Optional[int] = 1
) -> Array:
    """Simulate the shot gathers of velocity maps in m/s.

    Returns (N, n_sources, nt, n_receivers) float32 — (N,5,1000,70) for OpenFWI — in OpenFWI
    amplitude units. A torch input keeps the autograd graph (deepwave is differentiable).
    ``threads``: torch threads during the call (restored after). One is the default because the
    stencil's threads spin-wait: with a second busy process on the machine, two threads run several
    times slower than one. None leaves torch's setting alone.
    """
    import torch

    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _forward(velocity, survey, batch_size)
    finally:
        if threads is not None:
            torch.set_num_threads(before)


def _forward(velocity: Array, survey: Survey, batch_size: int) -> Array:
    import deepwave
    import torch

    as_numpy = not isinstance(velocity, torch.Tensor)
    v = _as_batch(torch.as_tensor(np.asarray(velocity, dtype=np.float32)) if as_numpy else velocity, survey)
    _check_velocity(v.detach())

    ns, nr = survey.n_sources, survey.n_receivers
    nt_run = survey.nt + 1  # deepwave records one step later: run one more and drop the first
    wavelet = deepwave.wavelets.ricker(survey.freq, nt_run, survey.dt, peak_time=survey.peak_sample * survey.dt)
    wavelet = wavelet.to(device=v.device, dtype=v.dtype)
    src = torch.tensor([[[survey.depth_row, c]] for c in survey.source_columns], device=v.device)
    rec = torch.stack(
        [torch.full((nr,), survey.depth_row), torch.tensor(survey.receiver_columns)], dim=-1
    ).to(v.device)

    outputs = []
    for start in range(0, v.shape[0], batch_size):
        chunk = v[start : start + batch_size]
        n = chunk.shape[0]
        out = deepwave.scalar(
            chunk.repeat_interleave(ns, dim=0),  # one model per shot
            survey.dx,
            survey.dt,
            source_amplitudes=wavelet.expand(n * ns, 1, nt_run),
            source_locations=src.repeat(n, 1, 1),
            receiver_locations=rec.expand(n * ns, nr, 2),
            accuracy=survey.accuracy,
            pml_width=survey.pml_width,
            pml_freq=survey.pml_freq,
            courant_number=survey.courant_number,
        )
        traces = out.receiver_amplitudes  # (n*ns, nr, nt_run)
        outputs.append(-traces[..., 1:].reshape(n, ns, nr, survey.nt).transpose(2, 3))
    seismic = torch.cat(outputs)
    return seismic.detach().numpy().astype(np.float32, copy=False) if as_numpy else seismic
