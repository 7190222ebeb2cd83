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
