"""evaluate.json, evaluate.md and the PNG panels (samples.png, physics.png, distribution.png).

Figures use matplotlib's object API with the Agg canvas (no pyplot, no display, no global state).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import numpy as np
from ubdiff_onnx.runtime.atomic import atomic_write_bytes

SHOT = 2  # the middle of the five shots is shown in the panels


def public(report: dict[str, Any]) -> dict[str, Any]:
    """The report without the in-memory arrays kept for the figures."""
    return {k: v for k, v in report.items() if not k.startswith("_")}


def names(report: dict[str, Any]) -> dict[str, str]:
    """Display names: the bundles' precisions (e.g. ``qdq``, ``fp32``), made unique."""
    b = report["bundle"]["precision"]
    r = report["reference"]["precision"] if report["reference"] else None
    if r is None or r != b:
        return {"bundle": b, "reference": r or "reference", "real": "real data"}
    return {"bundle": f"bundle ({b})", "reference": f"reference ({r})", "real": "real data"}


# ---------------------------------------------------------------------------------------------
# Markdown


def _f(x: Optional[float], digits: int = 4) -> str:
    if x is None:
        return "–"
    if x != 0 and (abs(x) >= 1e4 or abs(x) < 1e-3):
        return f"{x:.3e}"
    return f"{x:.{digits}g}"


def judge_markdown(report: dict[str, Any], nm: dict[str, str]) -> list[str]:
    """The judge's section: pairwise SSIM beside the real ceiling, per-modality Fréchet beside the floor."""
    L = ["## The judge: pairwise SSIM and per-modality Fréchet distances", ""]
    jd = report.get("judge")
    if not jd:
        L += ["Skipped: no `--judge`. Train one on real pairs the diffusion model did not see "
              "(`ubdiff-onnx inversion train DATA JUDGE_DIR`, docs/evaluate.md) and pass `--judge JUDGE_DIR`.", ""]
        return L
    j = jd["judge"]
    cfg = j["config"]
    L.append(f"Judge `{j['path']}`: InversionNet width {cfg['width']:g}, every {cfg['time_decimation']} time sample(s), {j['parameters']:,} parameters, "
             f"trained on {', '.join('`' + d['path'] + '`' for d in j['trained_on'])}; none of it comes from the model being judged. "
             f"Pairwise SSIM = SSIM (OpenFWI convention: pytorch_ssim, zero-padded borders) between judge(seismic) and the velocity of the same pair. "
             f"Fréchet distances in the judge's seismic bottleneck ({jd['frechet']['seismic']['feature_dim']}-dim) and in its real-map velocity "
             f"auto-encoder's bottleneck ({jd['frechet']['velocity']['feature_dim']}-dim), {jd['frechet_count']} vs {jd['frechet_count']} samples; "
             f"the floor compares two disjoint sets of real pairs of that size.")
    L.append("")
    L.append("| set | pairwise SSIM (OpenFWI) | ÷ real ceiling | Fréchet seismic | ÷ floor | Fréchet velocity | ÷ floor |")
    L.append("|---|---|---|---|---|---|---|")
    ps, fs, fv = jd["pairwise_ssim"], jd["frechet"]["seismic"], jd["frechet"]["velocity"]
    L.append(f"| real pairs ({jd['n_real']}; ceiling / floor) | {_f(ps['real_ceiling']['mean'])} | 1 | {_f(fs['real_floor'])} | 1 | {_f(fv['real_floor'])} | 1 |")
    for key in ("bundle", "reference"):
        if key not in ps:
            continue
        ratio = (jd.get("pairwise_ssim_over_ceiling") or {}).get(key)
        L.append(f"| {nm[key]} | {_f(ps[key]['mean'])} | {_f(ratio, 3)} | {_f(fs.get(key))} | {_f(fs.get(key + '_over_floor'), 3)} | "
                 f"{_f(fv.get(key))} | {_f(fv.get(key + '_over_floor'), 3)} |")
    L += ["", "![judge](judge.png)", ""]
    return L


def memorisation_markdown(report: dict[str, Any], nm: dict[str, str]) -> list[str]:
    """Nearest-training-map distances of generated maps beside those of held-out real maps."""
    L = ["## Memorisation: distance to the nearest training map", ""]
    m = report.get("memorisation")
    if not m:
        return L + ["Skipped: no `--train-run RUN_DIR` (the training run whose maps the generated ones are compared with).", ""]
    tr = m["train_run"]
    L.append(f"RMS distance (m/s) from each velocity map to its nearest of the {m['train_maps']:,} maps run `{tr['run']}` trained on "
             f"({tr['folder_maps']} from its folder, {tr['extra_maps']:,} extra generator maps). A copying model puts generated maps closer "
             f"than unseen real maps; the check wants at most {100 * m['closer_fraction_limit']:.1f} % of generated maps below the held-out 5th percentile "
             f"(5 % when the distributions match, plus three standard errors at these counts) and a median ratio of at least 0.9.")
    L += ["", "| maps | n | min | p5 | p25 | median | p75 | p95 |", "|---|---|---|---|---|---|---|---|"]
    for key, label in (("heldout", "held-out real"), ("heldout_roundtrip", "held-out real through the autoencoder"), ("generated", nm["bundle"])):
        q = m.get(key)
        if not q:
            continue
        L.append(f"| {label} | {m['n_' + key]} | {q['min']:.1f} | {q['p5']:.1f} | {q['p25']:.1f} | {q['p50']:.1f} | {q['p75']:.1f} | {q['p95']:.1f} |")
    L += ["", f"Compared with: {'the round-tripped held-out maps (same decoder blur as the samples)' if m['compared_with'] == 'heldout_roundtrip' else 'the raw held-out maps'}. "
              f"Generated maps closer than the held-out 5th percentile: {100 * m['generated_closer_than_heldout_p5']:.1f} %; "
              f"median ratio generated ÷ held-out {m['median_ratio_generated_to_heldout']:.3f} → **{'not memorised' if m['passes'] else 'closer than unseen data'}**.", ""]
    return L


def markdown(report: dict[str, Any]) -> str:
    opts, nm = report["options"], names(report)
    L: list[str] = []
    ref_txt = f" vs `{report['reference']['path']}` ({nm['reference']})" if report["reference"] else ""
    L.append(f"# Evaluation: `{report['bundle']['path']}` ({nm['bundle']}){ref_txt}")
    L.append("")
    L.append(f"`{report['command']}`")
    L.append("")
    L.append(f"{opts['num_samples']} samples, {opts.get('sampler', 'ddim')} {opts['steps']} steps, seed {opts['seed']} (the same x_T through both bundles); "
             f"data `{report['data']['path']}` ({report['data']['samples']} samples; {len(report['data']['distribution_samples'])} used for the "
             f"distribution, {len(report['data']['physics_samples'])} for physics). {report['created']}.")
    L.append("")

    L.append("## Targets (issue 7: INT8 vs FP32)")
    L.append("")
    L.append("| target | measured | required | result |")
    L.append("|---|---|---|---|")
    for t in report["targets"]:
        res = "not measured (" + t["missing"] + ")" if t["met"] is None else ("met" if t["met"] else "**missed**")
        L.append(f"| {t['what']} | {_f(t['measured'])}{t['unit'] if t['measured'] is not None else ''} | {t['op']} {t['target']:g}{t['unit']} | {res} |")
    L.append("")

    L.append("## Fidelity (same x_T)")
    L.append("")
    fid = report["fidelity"]
    if fid is None:
        L.append("Skipped: no `--reference` bundle.")
    else:
        rows = [("velocity MAE (m/s)", "velocity_mae"), ("velocity SSIM, valid region (maps scaled to [0, 1] by {:g}–{:g} m/s)".format(*opts["velocity_ssim_range_ms"]), "velocity_ssim"),
                ("seismic relative L2", "seismic_rel_l2"), ("seismic correlation", "seismic_corr"), ("seismic relative L2, log amplitude", "seismic_rel_l2_log")]
        L.append(f"{nm['bundle']} against {nm['reference']}:")
        L.append("")
        L.append("| metric | mean | std | min | median | max |")
        L.append("|---|---|---|---|---|---|")
        for title, key in rows:
            s = fid[key]
            L.append(f"| {title} | {_f(s['mean'])} | {_f(s['std'])} | {_f(s['min'])} | {_f(s['median'])} | {_f(s['max'])} |")
        L.append("")
        n_show = min(16, opts["num_samples"])
        L.append(f"Per sample (first {n_show}; all in evaluate.json):")
        L.append("")
        L.append("| sample | MAE (m/s) | SSIM (valid region) | seismic rel L2 | seismic corr |")
        L.append("|---|---|---|---|---|")
        for i in range(n_show):
            L.append(f"| {i} | {_f(fid['velocity_mae']['per_sample'][i])} | {_f(fid['velocity_ssim']['per_sample'][i])} | "
                     f"{_f(fid['seismic_rel_l2']['per_sample'][i])} | {_f(fid['seismic_corr']['per_sample'][i])} |")
    L.append("")

    L.extend(judge_markdown(report, nm))
    L.extend(memorisation_markdown(report, nm))

    L.append("## Distribution")
    L.append("")
    dist = report["distribution"]
    fr = dist["frechet"]
    if fr is None:
        L.append("Fréchet distance skipped: no trained encoder (`--checkpoint`).")
    else:
        enc = report["encoder"]
        L.append(f"Fréchet distance in the trained encoder's {enc['latent_dim']}-dim latent space (encoder from `{enc['checkpoint']}`, "
                 f"{enc['found_via']}); {fr['n_generated']} generated vs {fr['n_real']} real maps:")
        L.append("")
        L.append("| pair | Fréchet distance |")
        L.append("|---|---|")
        L.append(f"| {nm['bundle']} vs real | {_f(fr['bundle_vs_real'])} |")
        if fr["reference_vs_real"] is not None:
            L.append(f"| {nm['reference']} vs real | {_f(fr['reference_vs_real'])} |")
            L.append(f"| {nm['bundle']} vs {nm['reference']} | {_f(fr['bundle_vs_reference'])} |")
        if fr["real_half_vs_half"] is not None:
            L.append(f"| real vs real (two halves of {fr['real_half_size']}: noise floor) | {_f(fr['real_half_vs_half'])} |")
        rt = fr.get("autoencoder_roundtrip")
        if rt:
            L += ["", "Autoencoder round trip on the real maps (the checkpoint's encoder, then each bundle's decoders): what the latent "
                  "space can express at all, an upper bound for the samples.", "",
                  "| decoders | velocity SSIM (OpenFWI) | velocity MAE m/s | seismic rel. L2 vs the real gathers |", "|---|---|---|---|"]
            for key in ("bundle", "reference"):
                if key in rt:
                    r = rt[key]
                    L.append(f"| {nm[key]} | {r['velocity_ssim_openfwi']:.4f} | {r['velocity_mae_ms']:.1f} | {r['seismic_rel_l2']:.4f} (first {r['seismic_n']}) |")
    L.append("")
    L.append("Velocity values (m/s; W1 = 1-D Wasserstein distance of the pooled values to the real ones):")
    L.append("")
    L.append("| set | mean | std | p1 | p50 | p99 | outside 1500–4500 | W1 to real |")
    L.append("|---|---|---|---|---|---|---|---|")
    for key in ("real", "reference", "bundle"):
        s = dist["velocity"].get(key)
        if s is None:
            continue
        w1 = dist["velocity_w1_to_real_ms"].get(key)
        L.append(f"| {nm[key]} | {s['mean']:.0f} | {s['std']:.0f} | {s['p1']:.0f} | {s['p50']:.0f} | {s['p99']:.0f} | "
                 f"{100 * s['outside_label_range']:.2f} % | {'–' if w1 is None else f'{w1:.1f}'} |")
    L.append("")

    L.append("## Physics consistency")
    L.append("")
    if report["physics"] is None:
        L.append("Skipped (`--no-physics`).")
    else:
        L.append("Each velocity map forward-modelled (OpenFWI's acoustic scheme, deepwave) and compared with its seismic record:")
        L.append("")
        L.append("| pairs | n | rel L2 (mean) | rel L2 (median) | correlation (mean) | rel L2, log amplitude (mean) |")
        L.append("|---|---|---|---|---|---|")
    for key in ("bundle", "reference", "real") if report["physics"] is not None else ():
        p = report["physics"].get(key)
        if p is None:
            continue
        L.append(f"| {nm[key]} | {p['rel_l2']['n']} | {_f(p['rel_l2']['mean'])} | {_f(p['rel_l2']['median'])} | {_f(p['corr']['mean'])} | {_f(p['rel_l2_log']['mean'])} |")
    L.append("")

    L.append("## Panels")
    L.append("")
    L.append("![samples](samples.png)")
    L.append("")
    if report["physics"] is not None:
        L.append("![physics](physics.png)")
        L.append("")
    L.append("![distribution](distribution.png)")
    L.append("")
    if report["notes"]:
        L.append("## Notes")
        L.append("")
        L.extend(f"- {n}" for n in report["notes"])
        L.append("")
    L.append("## Definitions")
    L.append("")
    L.append("- Velocity MAE: mean |Δv| in m/s. SSIM: Wang et al. 2004, 11×11 Gaussian window σ 1.5, K1 0.01, K2 0.03, valid region, on maps scaled to [0, 1] by the label range (data range 1 = 3000 m/s), as OpenFWI does.")
    L.append("- Seismic relative L2: ‖s − s_ref‖/‖s_ref‖ in OpenFWI amplitude units; log amplitude: the same after sign(s)·log1p(|s|). Correlation: Pearson, flattened.")
    L.append("- Fréchet distance: ‖μ₁−μ₂‖² + tr(Σ₁+Σ₂−2(Σ₁^½Σ₂Σ₁^½)^½) between Gaussians fitted to encoder latents (FID with UB-Diff's trained velocity encoder instead of Inception). Biased up for few samples: compare runs with equal counts.")
    L.append("- Physics: s_ref = forward model of the velocity map of the same pair; real pairs show the method's floor.")
    L.append("")
    return "\n".join(L)


# ---------------------------------------------------------------------------------------------
# figures


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _clip(*arrays: np.ndarray) -> float:
    return float(np.percentile(np.abs(np.concatenate([a.ravel() for a in arrays])), 98)) or 1.0


def _velocity(ax, fig, v: np.ndarray, title: str, lo: float, hi: float) -> None:
    im = ax.imshow(v.reshape(70, 70), cmap="jet", vmin=lo, vmax=hi, extent=(0, 700, 700, 0), interpolation="nearest")
    fig.colorbar(im, ax=ax, shrink=0.8, label="m/s")
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("x (m)", fontsize=7)
    ax.set_ylabel("depth (m)", fontsize=7)
    ax.tick_params(labelsize=7)


def _gather(ax, s: np.ndarray, title: str, clip: float, cmap: str = "seismic") -> None:
    ax.imshow(s, cmap=cmap, vmin=-clip, vmax=clip, aspect="auto", extent=(0, 700, 1.0, 0), interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("receiver x (m)", fontsize=7)
    ax.set_ylabel("time (s)", fontsize=7)
    ax.tick_params(labelsize=7)


def samples_png(report: dict[str, Any], path: Path) -> None:
    """One row per sample: FP32 and INT8 velocity side by side, |Δv|, then shot 3 of both and Δ."""
    nm, panels = names(report), report["_panels"]
    vb, sb = panels["bundle"]
    ref = panels["reference"]
    lo, hi = 1500.0, 4500.0
    fid = report["fidelity"]
    n = len(vb)
    cols = 6 if ref is not None else 2
    fig = _figure(3.0 * cols, 2.7 * n)
    axes = fig.subplots(n, cols, squeeze=False)
    for i in range(n):
        if ref is None:
            _velocity(axes[i, 0], fig, vb[i], f"{nm['bundle']} #{i}: velocity", lo, hi)
            _gather(axes[i, 1], sb[i, SHOT], f"{nm['bundle']} #{i}: shot {SHOT + 1}", _clip(sb[i, SHOT]))
            continue
        vr, sr = ref[0][i], ref[1][i]
        _velocity(axes[i, 0], fig, vr, f"{nm['reference']} #{i}: velocity", lo, hi)
        _velocity(axes[i, 1], fig, vb[i], f"{nm['bundle']} #{i}: velocity", lo, hi)
        d = np.abs(vb[i] - vr).reshape(70, 70)
        im = axes[i, 2].imshow(d, cmap="magma", vmin=0, vmax=max(float(d.max()), 1.0), extent=(0, 700, 700, 0), interpolation="nearest")
        fig.colorbar(im, ax=axes[i, 2], shrink=0.8, label="m/s")
        axes[i, 2].set_title(f"|Δv|: MAE {fid['velocity_mae']['per_sample'][i]:.1f} m/s, SSIM {fid['velocity_ssim']['per_sample'][i]:.3f}", fontsize=9)
        axes[i, 2].set_xlabel("x (m)", fontsize=7)
        axes[i, 2].tick_params(labelsize=7)
        c = _clip(sr[SHOT], sb[i, SHOT])
        _gather(axes[i, 3], sr[SHOT], f"{nm['reference']}: shot {SHOT + 1}", c)
        _gather(axes[i, 4], sb[i, SHOT], f"{nm['bundle']}: shot {SHOT + 1}", c)
        _gather(axes[i, 5], sb[i, SHOT] - sr[SHOT], f"Δ (same scale): rel L2 {fid['seismic_rel_l2']['per_sample'][i]:.3g}", c)
    fig.suptitle(f"same x_T, {report['options'].get('sampler', 'ddim')} {report['options']['steps']} steps (seismic clipped at the 98th percentile of |amplitude|)", fontsize=10)
    fig.savefig(path, format="png")


def physics_png(report: dict[str, Any], path: Path) -> None:
    """Rows bundle / reference / real: the pair's seismic, the forward model of its velocity, their difference."""
    nm, phys = names(report), report["_panels"]["physics"]
    rows = [(k, phys[k]) for k in ("bundle", "reference", "real") if phys.get(k) is not None]
    fig = _figure(9.0, 2.8 * len(rows))
    axes = fig.subplots(len(rows), 3, squeeze=False)
    for r, (key, (seis, sim)) in enumerate(rows):
        c = _clip(sim[SHOT])
        err = report["physics"][key]["rel_l2"]["per_sample"][0]
        _gather(axes[r, 0], seis[SHOT], f"{nm[key]} #0: seismic (shot {SHOT + 1})", c)
        _gather(axes[r, 1], sim[SHOT], "forward model of its velocity", c)
        _gather(axes[r, 2], seis[SHOT] - sim[SHOT], f"difference: rel L2 {err:.3g}", c)
    fig.suptitle("physics consistency (same colour scale per row)", fontsize=10)
    fig.savefig(path, format="png")


def distribution_png(report: dict[str, Any], path: Path) -> None:
    """Velocity histograms of real / reference / bundle; PCA of encoder latents when measured."""
    nm, panels = names(report), report["_panels"]
    lat = panels["latents"]
    fig = _figure(11.0 if lat else 5.5, 4.0)
    axes = fig.subplots(1, 2 if lat else 1, squeeze=False)[0]
    ax = axes[0]
    edges = np.asarray(report["distribution"]["velocity"]["real"]["histogram"]["edges"])
    for key, style in (("real", dict(color="k", lw=2.0)), ("reference", dict(color="tab:blue", lw=1.3)), ("bundle", dict(color="tab:red", lw=1.3, ls="--"))):
        v = panels["velocity"].get(key)
        if v is None:
            continue
        counts, _ = np.histogram(np.clip(v.ravel(), edges[0], edges[-1]), bins=edges, density=True)
        ax.stairs(counts, edges, label=nm[key], **style)
    ax.set(xlabel="velocity (m/s)", ylabel="density", title="velocity values")
    ax.legend(fontsize=8)
    if lat:
        ax = axes[1]
        real = lat["real"]
        mu = real.mean(axis=0)
        _, _, vt = np.linalg.svd(real - mu, full_matrices=False)
        basis = vt[:2].T
        for key, style in (("real", dict(c="k", s=10, alpha=0.4)), ("reference", dict(c="tab:blue", s=14, marker="s", alpha=0.7)),
                           ("bundle", dict(c="tab:red", s=14, marker="x"))):
            if key in lat:
                p = (lat[key] - mu) @ basis
                ax.scatter(p[:, 0], p[:, 1], label=nm[key], **style)
        fr = report["distribution"]["frechet"]
        ax.set(xlabel="PC 1 (of real latents)", ylabel="PC 2", title=f"encoder latents; Fréchet to real: {nm['bundle']} {fr['bundle_vs_real']:.3g}"
               + (f", {nm['reference']} {fr['reference_vs_real']:.3g}" if fr["reference_vs_real"] is not None else ""))
        ax.title.set_fontsize(9)
        ax.legend(fontsize=8)
    fig.savefig(path, format="png")


def judge_png(report: dict[str, Any], path: Path) -> None:
    """Generated pairs beside held-out real pairs, same colour scales: velocity, what the judge inverts
    from the pair's seismic (pairwise SSIM), and the seismic's middle shot."""
    nm, panels = names(report), report["_panels"]["judge"]
    rows = [(key, i, t) for key in ("real", "bundle", "reference") for i, t in enumerate(panels.get(key) or [])]
    if not rows:
        return
    per = report["judge"]["pairwise_ssim"]
    c = _clip(*[t[2] for k, _, t in rows if k == "real"]) if panels.get("real") else _clip(*[t[2] for _, _, t in rows])
    fig = _figure(9.6, 2.5 * len(rows))
    axes = fig.subplots(len(rows), 3, squeeze=False)
    label = {"real": "real (held-out)", "bundle": nm["bundle"], "reference": nm["reference"]}
    for r, (key, i, (vel, inv, shot)) in enumerate(rows):
        ssim_i = per["real_ceiling" if key == "real" else key]["per_sample"][i]
        _velocity(axes[r, 0], fig, vel, f"{label[key]} #{i}: velocity", 1500.0, 4500.0)
        _velocity(axes[r, 1], fig, inv, f"judge(its seismic): pairwise SSIM {ssim_i:.3f}", 1500.0, 4500.0)
        _gather(axes[r, 2], shot, f"{label[key]} #{i}: shot {SHOT + 1}", c)
    fig.suptitle("the judge on real and generated pairs (same colour scales; seismic clipped at the real pairs' 98th percentile)", fontsize=10)
    fig.savefig(path, format="png")


def write_report(report: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    """Write every file; returns name → path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "evaluate.json", "markdown": out_dir / "evaluate.md", "samples": out_dir / "samples.png",
             "physics": out_dir / "physics.png", "distribution": out_dir / "distribution.png"}
    atomic_write_bytes(paths["json"], (json.dumps(public(report), indent=1) + "\n").encode())
    atomic_write_bytes(paths["markdown"], markdown(report).encode())
    samples_png(report, paths["samples"])
    if report["physics"] is not None:
        physics_png(report, paths["physics"])
    else:
        del paths["physics"]
    distribution_png(report, paths["distribution"])
    if report.get("judge"):
        paths["judge"] = out_dir / "judge.png"
        judge_png(report, paths["judge"])
    return paths
