"""PNG of one sample: the velocity map and its five shot gathers, laid out as a geophysicist expects.

Velocity: depth down, x across, m/s colour bar, sources (stars) and receivers (line) at 10 m depth.
Gathers: time down, receiver position across, a diverging colormap clipped symmetrically at a high
percentile of |amplitude| so reflections are not drowned by the direct wave.

Uses matplotlib's object API (no pyplot), so it never needs a display and never touches global state.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from ubdiff_onnx.data.forward import OPENFWI_SURVEY, Survey


def plot_sample(
    velocity: np.ndarray,
    seismic: Optional[np.ndarray],
    out: str | Path,
    title: str = "",
    survey: Survey = OPENFWI_SURVEY,
    clip_percentile: float = 98.0,
) -> Path:
    """Write ``out`` (PNG). ``velocity`` (70,70) or (1,70,70) m/s; ``seismic`` (5,1000,70) or None."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    v = np.asarray(velocity, dtype=np.float32).reshape(survey.nz, survey.nx)
    n_shots = 0 if seismic is None else seismic.shape[0]
    fig = Figure(figsize=(3.4 + 2.3 * n_shots, 4.2), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 1 + n_shots, gridspec_kw={"width_ratios": [1.45] + [1] * n_shots}, squeeze=False)[0]

    width, depth = survey.nx * survey.dx, survey.nz * survey.dx
    ax = axes[0]
    im = ax.imshow(v, cmap="jet", extent=(0, width, depth, 0), vmin=1500, vmax=4500, interpolation="nearest")
    fig.colorbar(im, ax=ax, label="velocity (m/s)", shrink=0.9)
    z = (survey.depth_row + 0.5) * survey.dx
    ax.plot([0, width], [z, z], color="white", lw=0.8, ls=":")
    ax.plot((np.array(survey.source_columns) + 0.5) * survey.dx, [z] * survey.n_sources, "*", color="white", ms=7, mec="k", mew=0.5)
    ax.set(xlabel="x (m)", ylabel="depth (m)", title="velocity")

    if seismic is not None:
        s = np.asarray(seismic, dtype=np.float32)
        clip = float(np.percentile(np.abs(s), clip_percentile)) or 1.0
        t_end = survey.nt * survey.dt
        for k, ax in enumerate(axes[1:]):
            ax.imshow(s[k], cmap="seismic", vmin=-clip, vmax=clip, aspect="auto", extent=(0, width, t_end, 0), interpolation="bilinear")
            sx = (survey.source_columns[k] + 0.5) * survey.dx if k < survey.n_sources else None
            ax.set(xlabel="receiver x (m)", title=f"shot {k + 1}" + (f" (x={sx:.0f} m)" if sx is not None else ""))
            if sx is not None:
                ax.plot([sx], [0.0], "v", color="k", ms=6, clip_on=False)
            if k == 0:
                ax.set_ylabel("time (s)")
            else:
                ax.tick_params(labelleft=False)
        title = f"{title}   (gathers clipped at ±{clip:.3g})".strip()
    if title:
        fig.suptitle(title)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png")
    return out


def plot_generated_vs_real(
    generated: tuple[np.ndarray, np.ndarray],
    real: tuple[np.ndarray, np.ndarray],
    out: str | Path,
    caption: str,
    shot: int = 2,
    survey: Survey = OPENFWI_SURVEY,
    clip_percentile: float = 98.0,
) -> Path:
    """Write ``out`` (PNG): columns of generated pairs beside columns of real pairs, velocity above
    the middle shot gather, every panel on the *same* colour scale (velocity 1500–4500 m/s; gathers
    clipped at the real gathers' ``clip_percentile``), so the eye compares like with like."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    gv, gs = (np.asarray(a, dtype=np.float32) for a in generated)
    rv, rs = (np.asarray(a, dtype=np.float32) for a in real)
    n_gen, n_real = len(gv), len(rv)
    clip = float(np.percentile(np.abs(rs[:, shot]), clip_percentile)) or 1.0
    cols = n_gen + n_real
    fig = Figure(figsize=(2.1 * cols + 0.9, 5.6), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, cols, squeeze=False, gridspec_kw={"height_ratios": [1, 1.25]})
    width, depth, t_end = survey.nx * survey.dx, survey.nz * survey.dx, survey.nt * survey.dt
    im = None
    for c in range(cols):
        is_gen = c < n_gen
        v = (gv[c] if is_gen else rv[c - n_gen]).reshape(survey.nz, survey.nx)
        s = (gs[c] if is_gen else rs[c - n_gen])[shot]
        label = f"generated {c}" if is_gen else f"real {c - n_gen}"
        im = axes[0, c].imshow(v, cmap="jet", vmin=1500, vmax=4500, extent=(0, width, depth, 0), interpolation="nearest")
        axes[0, c].set_title(label, fontsize=9, color="C3" if is_gen else "k")
        axes[1, c].imshow(s, cmap="seismic", vmin=-clip, vmax=clip, aspect="auto", extent=(0, width, t_end, 0), interpolation="bilinear")
        for r in (0, 1):
            axes[r, c].tick_params(labelsize=7, labelleft=(c == 0))
        axes[1, c].set_xlabel("x (m)", fontsize=7)
    axes[0, 0].set_ylabel("depth (m)", fontsize=8)
    axes[1, 0].set_ylabel(f"time (s), shot {shot + 1}", fontsize=8)
    fig.colorbar(im, ax=axes[0, :], label="m/s", shrink=0.9, aspect=12)
    fig.suptitle(caption + f"\nsame colour scales: velocity 1500–4500 m/s, gathers ±{clip:.3g} (real gathers' {clip_percentile:g}th percentile)", fontsize=9)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.stem + ".tmp.png")
    fig.savefig(tmp, format="png")
    tmp.replace(out)
    return out
